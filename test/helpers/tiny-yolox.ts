// A tiny model in the YOLOX format (input [N, 3, 32, 32], output [N, 21, 5 + classes]) whose
// batch dimension is left open, for the tests of batched inference: the bundled model takes one
// frame a run. Its output depends on each frame's mean colour, so frames mixed up in a batch show.
// Written as ONNX protobuf by hand (field numbers from the ONNX IR specification): no ONNX tooling
// runs on this machine.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

const SIZE = 32;
const CELLS = (SIZE / 8) ** 2 + (SIZE / 16) ** 2 + (SIZE / 32) ** 2;

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // int64 as two's complement
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}
const tag = (field: number, wire: number) => varint((field << 3) | wire);
const int = (field: number, n: number | bigint) => Buffer.from([...tag(field, 0), ...varint(n)]);
const bytes = (field: number, b: Buffer | string) => {
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  return Buffer.concat([Buffer.from([...tag(field, 2), ...varint(buf.length)]), buf]);
};
const message = (field: number, ...parts: Buffer[]) => bytes(field, Buffer.concat(parts));

const FLOAT = 1;
const INT64 = 7;

function tensor(name: string, dims: number[], type: number, data: Buffer): Buffer {
  return message(5, ...dims.map((d) => int(1, d)), int(2, type), bytes(8, name), bytes(9, data));
}

function valueInfo(field: number, name: string, dims: Array<number | string>): Buffer {
  const shape = dims.map((d) => message(1, typeof d === 'number' ? int(1, d) : bytes(2, d)));
  // ValueInfoProto { name, type: TypeProto { tensor_type: { elem_type, shape } } }
  return message(field, bytes(1, name), message(2, message(1, int(1, FLOAT), message(2, ...shape))));
}

function node(op: string, inputs: string[], outputs: string[], attributes: Buffer[] = []): Buffer {
  return message(1, ...inputs.map((i) => bytes(1, i)), ...outputs.map((o) => bytes(2, o)), bytes(4, op), ...attributes);
}
const intAttribute = (name: string, value: number) => message(5, bytes(1, name), int(3, value), int(20, 2));

/** Writes <dir>/tiny.onnx and tiny.labels; `batch` open (a named dimension) or fixed. */
export async function writeTinyYolox(dir: string, labels: string[], batch: 'open' | number): Promise<string> {
  const width = 5 + labels.length;
  // Fixed weights: each of the 21 cells' outputs is a different mix of the frame's mean B, G, R.
  const weights = Buffer.alloc(3 * CELLS * width * 4);
  for (let i = 0; i < 3 * CELLS * width; i++) weights.writeFloatLE(Math.sin(i * 12.9898) * 0.02, i * 4);
  const shape = Buffer.alloc(3 * 8);
  [-1, CELLS, width].forEach((v, i) => shape.writeBigInt64LE(BigInt(v), i * 8));
  const n = batch === 'open' ? 'batch' : batch;
  const graph = Buffer.concat([
    node('GlobalAveragePool', ['images'], ['pooled']),
    node('Flatten', ['pooled'], ['flat'], [intAttribute('axis', 1)]),
    node('MatMul', ['flat', 'weights'], ['mixed']),
    node('Reshape', ['mixed', 'shape'], ['grid']),
    node('Sigmoid', ['grid'], ['output']),
    bytes(2, 'tiny-yolox'),
    tensor('weights', [3, CELLS * width], FLOAT, weights),
    tensor('shape', [3], INT64, shape),
    valueInfo(11, 'images', [n, 3, SIZE, SIZE]),
    valueInfo(12, 'output', [n, CELLS, width]),
  ]);
  const model = Buffer.concat([
    int(1, 8), // ir_version
    bytes(2, 'fogedge-tests'),
    message(8, bytes(1, ''), int(2, 13)), // opset 13
    message(7, graph),
  ]);
  const file = path.join(dir, 'tiny.onnx');
  await writeFile(file, model);
  await writeFile(path.join(dir, 'tiny.labels'), labels.join('\n') + '\n');
  return file;
}

// The signed firmware image a camera takes: a header naming the model and version and the
// payload's SHA-256, signed with the vendor's Ed25519 key, then the payload.
//   "FEFW1\n" | u32 BE manifest length | manifest JSON | 64-byte Ed25519 signature | payload
// The signature covers the magic, the length and the manifest, and so (by its hash) the payload.
import { createHash, sign, verify, type KeyObject } from 'node:crypto';

const MAGIC = Buffer.from('FEFW1\n');
const SIGNATURE_BYTES = 64;
const MAX_MANIFEST_BYTES = 4096;

export interface Manifest {
  model: string;
  version: string;
  payloadBytes: number;
  payloadSha256: string;
}

export class ImageError extends Error {
  constructor(
    message: string,
    /** What is wrong, for the fault string and the tests. */
    readonly reason: 'format' | 'signature' | 'payload' | 'model',
  ) {
    super(message);
    this.name = 'ImageError';
  }
}

/** Builds a signed image (the vendor's build step; the box only hosts it). */
export function buildImage(payload: Buffer, meta: { model: string; version: string }, vendorKey: KeyObject): Buffer {
  const manifest: Manifest = {
    ...meta,
    payloadBytes: payload.length,
    payloadSha256: createHash('sha256').update(payload).digest('hex'),
  };
  const json = Buffer.from(JSON.stringify(manifest));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length);
  const signed = Buffer.concat([MAGIC, length, json]);
  return Buffer.concat([signed, sign(null, signed, vendorKey), payload]);
}

/** Reads the header of an image (the first bytes of the file) without trusting it. */
export function readHeader(head: Buffer): {
  manifest: Manifest;
  signed: Buffer;
  signature: Buffer;
  payloadOffset: number;
} {
  if (head.length < MAGIC.length + 4 || !head.subarray(0, MAGIC.length).equals(MAGIC))
    throw new ImageError('Not a FogEdge firmware image (bad magic)', 'format');
  const length = head.readUInt32BE(MAGIC.length);
  if (length > MAX_MANIFEST_BYTES)
    throw new ImageError(`The image's manifest is ${length} bytes, more than ${MAX_MANIFEST_BYTES}`, 'format');
  const manifestEnd = MAGIC.length + 4 + length;
  if (head.length < manifestEnd + SIGNATURE_BYTES)
    throw new ImageError('The image is cut off inside its header', 'format');
  let manifest: Manifest;
  try {
    manifest = JSON.parse(head.subarray(MAGIC.length + 4, manifestEnd).toString('utf8')) as Manifest;
  } catch {
    throw new ImageError('The image manifest is not JSON', 'format');
  }
  if (
    typeof manifest.version !== 'string' ||
    typeof manifest.model !== 'string' ||
    !Number.isInteger(manifest.payloadBytes) ||
    !/^[0-9a-f]{64}$/.test(manifest.payloadSha256)
  ) {
    throw new ImageError('The image manifest lacks model, version, payloadBytes or payloadSha256', 'format');
  }
  return {
    manifest,
    signed: head.subarray(0, manifestEnd),
    signature: head.subarray(manifestEnd, manifestEnd + SIGNATURE_BYTES),
    payloadOffset: manifestEnd + SIGNATURE_BYTES,
  };
}

/** Checks a whole image: format, the vendor's signature, the payload's hash and the model. */
export function verifyImage(image: Buffer, vendorKey: KeyObject, model: string): Manifest {
  const { manifest, signed, signature, payloadOffset } = readHeader(image);
  if (!verify(null, signed, vendorKey, signature))
    throw new ImageError('The image is not signed by the vendor key this camera trusts', 'signature');
  const payload = image.subarray(payloadOffset);
  if (
    payload.length !== manifest.payloadBytes ||
    createHash('sha256').update(payload).digest('hex') !== manifest.payloadSha256
  ) {
    throw new ImageError('The image payload does not match its signed manifest', 'payload');
  }
  if (manifest.model !== model)
    throw new ImageError(`The image is for model "${manifest.model}", this camera is "${model}"`, 'model');
  return manifest;
}

// A camera vendor's download server on loopback: firmware images by name over real HTTP, as a
// camera's Download() or the box's campaign fetches them. A test may answer some names itself
// (a download cut off half way).
import { createServer, type Server, type ServerResponse } from 'node:http';
import path from 'node:path';
import { freePort } from './processes.ts';
import { sha256 } from './storage.ts';

export class VendorServer {
  readonly files = new Map<string, Buffer>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  /** `answer` may take a request by its file name (true: answered); the rest are served from `files`, else 404. */
  static async start(answer?: (name: string, res: ServerResponse) => boolean): Promise<VendorServer> {
    const port = await freePort();
    let self: VendorServer | undefined;
    const server = createServer((req, res) => {
      const name = path.basename(req.url ?? '');
      if (answer?.(name, res)) return;
      const body = self!.files.get(name);
      if (!body) return res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    self = new VendorServer(server, `http://127.0.0.1:${port}`);
    return self;
  }

  /** Serves `body` as `name`: its URL and SHA-256 (hex), as Download() and a campaign name them. */
  serve(name: string, body: Buffer): { url: string; sha256: string } {
    this.files.set(name, body);
    return { url: `${this.url}/${name}`, sha256: sha256(body) };
  }

  close(): void {
    this.server.close();
  }
}

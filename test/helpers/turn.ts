// The operator's STUN/TURN server for tests: Debian's coturn (turnserver) on loopback, with a
// long-term credential, relaying between loopback peers (what a test on one machine has).
import { freePort, Proc } from './processes.ts';

export class TurnServer {
  private proc: Proc | undefined;
  port = 0;
  readonly user = 'fogedge';
  readonly password = 'turn-secret-1';

  /** The URL the box's webrtc.iceServers takes (libdatachannel's form, credentials in it). */
  get boxUrl(): string {
    return `turn:${this.user}:${this.password}@127.0.0.1:${this.port}`;
  }
  /** The RTCIceServer a browser takes. */
  get browserServer(): { urls: string; username: string; credential: string } {
    return { urls: `turn:127.0.0.1:${this.port}`, username: this.user, credential: this.password };
  }

  /** Allocations made so far, from its log: proof that traffic went through it. */
  get allocations(): number {
    return this.lines().filter((l) => /ALLOCATE processed, success/.test(l)).length;
  }

  lines(): string[] {
    return this.proc?.lines ?? [];
  }

  async start(): Promise<void> {
    this.port = await freePort();
    const min = 50_000 + Math.floor(Math.random() * 10_000);
    this.proc = new Proc('turnserver', [
      '-n', // no config file
      '--listening-ip=127.0.0.1',
      `--listening-port=${this.port}`,
      '--relay-ip=127.0.0.1',
      `--min-port=${min}`,
      `--max-port=${min + 200}`,
      '--lt-cred-mech',
      '--fingerprint',
      `--user=${this.user}:${this.password}`,
      '--realm=fogedge.test',
      '--allow-loopback-peers',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      '--log-file=stdout',
      '--simple-log',
      '--verbose',
    ]);
    await this.proc.waitForLine(/listener opened on|Total UDP servers|IPv4. UDP listener opened/i, 10_000);
  }

  async stop(): Promise<void> {
    await this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }
}

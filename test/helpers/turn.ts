// The operator's STUN/TURN server for tests: Debian's coturn (turnserver) on loopback, with a
// long-term credential, relaying between loopback peers (what a test on one machine has).
import { freePort, Proc } from './processes.ts';

export class TurnServer {
  private proc: Proc | undefined;
  port = 0;
  readonly user = 'fogedge';
  readonly password = 'turn-secret-1';
  /** The secret it shares with the box for per-session credentials (TURN REST API), when started with it. */
  readonly sharedSecret = 'turn-rest-secret-1';

  /**
   * On loopback with one long-term user (the default), or as the operator runs it: in a network
   * namespace, on its public address, taking per-session credentials made with sharedSecret.
   */
  constructor(private readonly where: { netns: string; host: string } | null = null) {}

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
    this.port = this.where ? 3478 : await freePort();
    const host = this.where?.host ?? '127.0.0.1';
    const min = 50_000 + Math.floor(Math.random() * 10_000);
    const args = [
      '-n', // no config file
      `--listening-ip=${host}`,
      `--listening-port=${this.port}`,
      `--relay-ip=${host}`,
      `--min-port=${min}`,
      `--max-port=${min + 200}`,
      ...(this.where
        ? ['--use-auth-secret', `--static-auth-secret=${this.sharedSecret}`]
        : ['--lt-cred-mech', `--user=${this.user}:${this.password}`, '--allow-loopback-peers']),
      '--fingerprint',
      '--realm=fogedge.test',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      '--log-file=stdout',
      '--simple-log',
      '--verbose',
    ];
    this.proc = this.where
      ? new Proc('ip', ['netns', 'exec', this.where.netns, 'turnserver', ...args])
      : new Proc('turnserver', args);
    await this.proc.waitForLine(/listener opened on|Total UDP servers|IPv4. UDP listener opened/i, 10_000);
  }

  async stop(): Promise<void> {
    await this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }
}

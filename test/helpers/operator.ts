// The operator's side of the ADMP uplink: Debian's mosquitto as its broker (password file,
// persistence on disk, so it can be stopped and started like a real one), and an mqtt.js
// client acting as the platform: it collects what boxes send and sends commands down.
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort, Proc, waitUntil } from './processes.ts';

const run = promisify(execFile);

/** PEM text of the operator's CA and of certificates it signed (made with Debian's openssl). */
export interface Pki {
  ca: string;
  server: { cert: string; key: string };
  client: (name: string) => Promise<{ cert: string; key: string }>;
}

async function makePki(dir: string): Promise<Pki> {
  const at = (f: string) => path.join(dir, f);
  const ssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  await ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-subj',
    '/CN=Test operator CA',
    '-days',
    '2',
  );
  const sign = async (name: string, cn: string, ext: string) => {
    await ssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${cn}`,
    );
    await writeFile(at(`${name}.ext`), ext);
    await ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
    await chmod(at(`${name}.key`), 0o644); // mosquitto reads it as its own user
    return { cert: await readFile(at(`${name}.crt`), 'utf8'), key: await readFile(at(`${name}.key`), 'utf8') };
  };
  return {
    ca: await readFile(at('ca.crt'), 'utf8'),
    server: await sign('server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\n'),
    client: (name) => sign(`client-${name}`, name, 'extendedKeyUsage=clientAuth\n'),
  };
}

export class OperatorBroker {
  private proc: Proc | undefined;

  private constructor(
    readonly dir: string,
    readonly port: number,
    /** With TLS: a second listener that takes only clients with a certificate from `pki`, named by its CN. */
    readonly tls: { port: number; pki: Pki } | null,
    /** Where it runs: this machine's loopback, or an address in a network namespace of the test's. */
    readonly host = '127.0.0.1',
    readonly netns: string | null = null,
    /** A WebSocket listener for browsers (anonymous: the box trusts no one it relays for). */
    readonly websocketPort: number | null = null,
  ) {}

  /** Users: the box and the operator's platform, each with its own password. */
  static async start(
    users: Record<string, string>,
    options: { tls?: boolean; netns?: { name: string; host: string }; websockets?: boolean } = {},
  ): Promise<OperatorBroker> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fogedge-admp-'));
    await chmod(dir, 0o777); // mosquitto drops to its own user when started as root
    const passwords = path.join(dir, 'passwords');
    await writeFile(passwords, '');
    for (const [user, password] of Object.entries(users))
      await run('mosquitto_passwd', ['-b', passwords, user, password]);
    await chmod(passwords, 0o644);
    const tls = options.tls ? { port: await freePort(), pki: await makePki(dir) } : null;
    const host = options.netns?.host ?? '127.0.0.1';
    // A namespace of its own has every port free.
    const broker = new OperatorBroker(
      dir,
      options.netns ? 1883 : await freePort(),
      tls,
      host,
      options.netns?.name ?? null,
      options.websockets ? (options.netns ? 9001 : await freePort()) : null,
    );
    await writeFile(
      path.join(dir, 'mosquitto.conf'),
      [
        'per_listener_settings true',
        `listener ${broker.port} ${host}`,
        'allow_anonymous false',
        `password_file ${passwords}`,
        ...(broker.websocketPort
          ? [`listener ${broker.websocketPort} ${host}`, 'protocol websockets', 'allow_anonymous true']
          : []),
        ...(tls
          ? [
              `listener ${tls.port} 127.0.0.1`,
              `cafile ${dir}/ca.crt`,
              `certfile ${dir}/server.crt`,
              `keyfile ${dir}/server.key`,
              'require_certificate true',
              'use_identity_as_username true',
            ]
          : []),
        'persistence true',
        `persistence_location ${dir}/`,
        'log_dest stderr',
        'max_queued_messages 100000',
        '',
      ].join('\n'),
    );
    await broker.start();
    return broker;
  }

  get url() {
    return `mqtt://${this.host}:${this.port}`;
  }

  /** Where browsers reach it (MQTT over WebSocket). */
  get websocketUrl() {
    return `ws://${this.host}:${this.websocketPort}`;
  }

  get tlsUrl() {
    return `mqtts://127.0.0.1:${this.tls!.port}`;
  }

  async start(): Promise<void> {
    const command = ['mosquitto', '-c', path.join(this.dir, 'mosquitto.conf')];
    this.proc = this.netns
      ? new Proc('ip', ['netns', 'exec', this.netns, ...command])
      : new Proc(command[0]!, command.slice(1));
    await this.proc.waitForLine(/mosquitto version .* running/);
  }

  /** A user's password changed in the password file, and mosquitto told to read it again (SIGHUP), as an operator does. */
  async setPassword(user: string, password: string): Promise<void> {
    await run('mosquitto_passwd', ['-b', path.join(this.dir, 'passwords'), user, password]);
    await chmod(path.join(this.dir, 'passwords'), 0o644);
    if (this.proc) process.kill(this.proc.pid!, 'SIGHUP');
  }

  /** SIGTERM: mosquitto saves its sessions and queued messages, as a real broker's restart would. */
  async stop(): Promise<void> {
    await this.proc?.kill('SIGTERM');
    this.proc = undefined;
  }
}

export interface Received {
  topic: string;
  body: any;
  retain: boolean;
}

/** The platform: a persistent session on every box's topics, so nothing is missed while the broker restarts. */
export class Operator {
  readonly received: Received[] = [];

  private constructor(
    private readonly client: MqttClient,
    private readonly root: string,
  ) {}

  static async connect(url: string, username: string, password: string, root: string): Promise<Operator> {
    const client = await mqtt.connectAsync(url, {
      clientId: `operator-${process.pid}`,
      clean: false,
      username,
      password,
      reconnectPeriod: 200,
    });
    const operator = new Operator(client, root);
    client.on('message', (topic, payload, packet) => {
      let body: unknown = payload.toString();
      try {
        body = JSON.parse(payload.toString());
      } catch {
        // kept as text
      }
      operator.received.push({ topic: topic.slice(root.length + 1), body, retain: packet.retain });
    });
    await client.subscribeAsync(`${root}/#`, { qos: 2 });
    return operator;
  }

  on(topic: string): Received[] {
    return this.received.filter((r) => r.topic === topic);
  }

  waitFor(what: string, topic: string, match: (body: any) => boolean = () => true, timeoutMs = 15_000): Promise<any> {
    return waitUntil(what, () => this.on(topic).find((r) => match(r.body))?.body, timeoutMs, 50);
  }

  /** Sends a command and waits for the reply that comes after it. */
  async command(id: string, action: string, params: object = {}, extra: object = {}): Promise<any> {
    const before = this.on('commands/res').length;
    await this.client.publishAsync(
      `${this.root}/commands/req`,
      JSON.stringify({ id, action, params, sentAt: new Date().toISOString(), ...extra }),
      { qos: 1 },
    );
    return waitUntil(
      `the reply to ${id}`,
      () =>
        this.on('commands/res')
          .slice(before)
          .find((r) => r.body.id === id)?.body,
      15_000,
      50,
    );
  }

  sendRaw(topic: string, payload: string, retain = false) {
    return this.client.publishAsync(`${this.root}/${topic}`, payload, { qos: 1, retain });
  }

  close() {
    return this.client.endAsync(true);
  }
}

// The installer's command line: `npm run fogedge -- <command>`.
//   check-config               validate fogedge.yaml and the environment, print the result
//   set-admin <user>           create the first admin (or reset an admin's password);
//                              the password is read from FOGEDGE_ADMIN_PASSWORD or stdin
//   unlock                     lift every sign-in lock-out of the running box (at its next sign-in)
import { call } from '../lib/bus.ts';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline/promises';
import { z } from 'zod';
import { ConfigError, loadConfig, redactedConfig } from '../appliance/config.ts';
import { dataPaths } from '../appliance/data-dir.ts';
import { issuesOf } from '../lib/actions.ts';
import { Password, Username } from '../services/accounts/accounts.schemas.ts';
import { createBroker } from './broker.ts';

async function readPassword(): Promise<string> {
  const fromEnv = process.env['FOGEDGE_ADMIN_PASSWORD'];
  if (fromEnv) return fromEnv;
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  const line = await rl.question('Password: ');
  rl.close();
  return line.trim();
}

function checked<T>(what: string, schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success)
    throw new Error(
      `${what}: ${issuesOf(result.error)
        .map((i) => i.message)
        .join('; ')}`,
    );
  return result.data;
}

async function setAdmin(username: string): Promise<string> {
  const config = loadConfig();
  const name = checked('username', Username, username);
  const password = checked('password', Password, await readPassword());
  // The accounts service alone, in this process and on no bus: it opens the accounts database
  // itself, so stop the box first (LevelDB allows one process).
  const broker = createBroker(
    { ...config, services: ['accounts'], logLevel: 'warn' },
    { transporter: null, nodeID: 'fogedge-cli' },
  );
  await broker.start();
  try {
    const { created } = await call(broker, 'accounts.setAdmin', {
      username: name,
      password,
    });
    return created ? `admin "${name}" created` : `password of admin "${name}" reset; their sessions are signed out`;
  } finally {
    await broker.stop();
  }
}

async function main(): Promise<void> {
  const { positionals } = parseArgs({ allowPositionals: true });
  const [command, arg] = positionals;
  switch (command) {
    case 'check-config':
      console.log(JSON.stringify(redactedConfig(loadConfig()), null, 2));
      return;
    case 'set-admin':
      if (!arg) throw new Error('usage: set-admin <username>');
      console.log(await setAdmin(arg));
      return;
    case 'unlock':
      // Whoever runs this is on the box itself: the lock-outs are the running box's, so a file says it.
      await writeFile(dataPaths(loadConfig()).unlockSignIns, new Date().toISOString() + '\n');
      console.log('sign-in lock-outs are lifted at the next sign-in');
      return;
    default:
      throw new Error(`unknown command "${command ?? ''}"; commands: check-config, set-admin <username>, unlock`);
  }
}

main().catch((err: Error) => {
  console.error(err instanceof ConfigError ? err.message : `fogedge: ${err.message}`);
  process.exit(err instanceof ConfigError ? 78 : 1);
});

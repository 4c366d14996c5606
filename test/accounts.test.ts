import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Store } from '../lib/store.ts';
import { Accounts, type AccountsOptions } from '../services/accounts/accounts.ts';
import { hashPassword, verifyPassword } from '../lib/secrets.ts';
import { tempDir } from './helpers/box.ts';

const options: AccountsOptions = {
  sessionTtlHours: 1,
  maxFailuresPerAddress: 6,
  maxFailuresPerAccount: 3,
  failureWindowMinutes: 15,
};
const PASSWORD = 'a long passphrase';

async function open(now?: () => number) {
  const dir = await tempDir();
  const store = await Store.open(dir);
  const accounts = new Accounts(store, options, now);
  return {
    dir,
    store,
    accounts,
    close: async () => (await store.close(), await rm(dir, { recursive: true, force: true })),
  };
}

async function rejects(
  promise: Promise<unknown>,
  type: string,
): Promise<Error & { code: number; type: string; data?: any }> {
  try {
    await promise;
  } catch (err) {
    assert.is((err as { type?: string }).type, type, (err as Error).message);
    return err as Error & { code: number; type: string };
  }
  throw new assert.Assertion({
    message: `expected a rejection with ${type}`,
    operator: 'rejects',
    expects: type,
    actual: 'resolved',
  });
}

test('passwords: scrypt hashes, salted, verified, never stored in clear', async () => {
  const a = await hashPassword(PASSWORD);
  const b = await hashPassword(PASSWORD);
  assert.match(a, /^scrypt\$32768\$8\$1\$/);
  assert.is.not(a, b);
  assert.ok(await verifyPassword(PASSWORD, a));
  assert.not.ok(await verifyPassword('wrong', a));
  assert.not.ok(await verifyPassword(PASSWORD, 'md5$whatever'));

  const { dir, accounts, store } = await open();
  await accounts.setup('admin', PASSWORD);
  await store.close();
  for (const file of await readdir(dir)) {
    const bytes = await readFile(path.join(dir, file)).catch(() => Buffer.alloc(0));
    assert.not.ok(bytes.includes(PASSWORD), `password in clear in ${file}`);
  }
  await rm(dir, { recursive: true, force: true });
});

test('first-run setup works once, even when two race for it', async () => {
  const box = await open();
  assert.ok(await box.accounts.needsSetup());
  const results = await Promise.allSettled([
    box.accounts.setup('first', PASSWORD),
    box.accounts.setup('second', PASSWORD),
  ]);
  assert.equal(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  assert.is((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.type, 'ALREADY_SET_UP');
  assert.not.ok(await box.accounts.needsSetup());
  assert.is((await box.accounts.listUsers()).length, 1);
  await box.close();
});

test('sign-in: right password gives a session that authenticates; wrong ones say nothing about which part', async () => {
  const box = await open();
  await box.accounts.setup('admin', PASSWORD);
  const signedIn = await box.accounts.login('Admin', PASSWORD, '10.0.0.1');
  assert.match(signedIn.session, /^fes_[a-f0-9]{16}_/);
  const auth = await box.accounts.authenticate(signedIn.session);
  assert.is(auth.user.username, 'admin');
  assert.is(auth.kind, 'session');
  const wrongPassword = await rejects(box.accounts.login('admin', 'nope', '10.0.0.1'), 'INVALID_CREDENTIALS');
  const noUser = await rejects(box.accounts.login('ghost', 'nope', '10.0.0.1'), 'INVALID_CREDENTIALS');
  assert.is(wrongPassword.message, noUser.message);
  await rejects(box.accounts.authenticate(signedIn.session.slice(0, -1) + 'x'), 'INVALID_CREDENTIAL');
  await rejects(box.accounts.authenticate('garbage'), 'INVALID_CREDENTIAL');
  await box.accounts.logout(signedIn.session);
  await rejects(box.accounts.authenticate(signedIn.session), 'INVALID_CREDENTIAL');
  await box.close();
});

test('failed sign-ins are limited per account, even with the right password after', async () => {
  const box = await open();
  await box.accounts.setup('admin', PASSWORD);
  for (let i = 0; i < options.maxFailuresPerAccount; i++) {
    await rejects(box.accounts.login('admin', 'wrong', `10.0.0.${i}`), 'INVALID_CREDENTIALS');
  }
  const limited = await rejects(box.accounts.login('admin', PASSWORD, '10.0.0.99'), 'LOGIN_RATE_LIMITED');
  assert.is(limited.code, 429);
  assert.ok(limited.data.retryAfterSeconds > 0 && limited.data.retryAfterSeconds <= 15 * 60);
  await box.close();
});

test("a stranger's guesses never lock the owner out of the owner's own devices; `fogedge unlock` lifts every lock-out", async () => {
  const box = await open();
  await box.accounts.setup('admin', PASSWORD);
  await box.accounts.login('admin', PASSWORD, '192.168.1.20'); // the owner's phone, signed in before
  // A stranger (or many) on the LAN guesses the admin's password again and again.
  for (let i = 0; i < options.maxFailuresPerAccount; i++)
    await rejects(box.accounts.login('admin', 'guess', `10.9.0.${i}`), 'INVALID_CREDENTIALS');
  for (let i = 0; i < 20; i++)
    await rejects(box.accounts.login('admin', PASSWORD, `10.9.1.${i}`), 'LOGIN_RATE_LIMITED');
  assert.is(
    (await box.accounts.login('admin', PASSWORD, '192.168.1.20')).user.username,
    'admin',
    'the owner signs in from a known device',
  );
  // Even guesses from the owner's own address are held back for that address, not for others.
  for (let i = 0; i < options.maxFailuresPerAccount; i++)
    await rejects(box.accounts.login('admin', 'typo', '192.168.1.20'), 'INVALID_CREDENTIALS');
  await rejects(box.accounts.login('admin', PASSWORD, '192.168.1.20'), 'LOGIN_RATE_LIMITED');

  // `fogedge unlock` on the box: a file the running box looks for when it would refuse.
  const unlockFile = path.join(box.dir, 'unlock-sign-ins');
  const unlockable = new Accounts(box.store, { ...options, unlockFile });
  for (let i = 0; i < options.maxFailuresPerAccount; i++)
    await rejects(unlockable.login('admin', 'typo', '192.168.1.30'), 'INVALID_CREDENTIALS');
  await rejects(unlockable.login('admin', PASSWORD, '192.168.1.30'), 'LOGIN_RATE_LIMITED');
  await writeFile(unlockFile, 'now');
  assert.is((await unlockable.login('admin', PASSWORD, '192.168.1.30')).user.username, 'admin');
  assert.not.ok(existsSync(unlockFile), 'the request is used up');
  await box.close();
});

test('failed sign-ins are limited per address across accounts', async () => {
  const box = await open();
  await box.accounts.setup('admin', PASSWORD);
  for (let i = 0; i < options.maxFailuresPerAddress; i++) {
    await rejects(box.accounts.login(`user${i}`, 'wrong', '192.0.2.7'), 'INVALID_CREDENTIALS');
  }
  await rejects(box.accounts.login('admin', PASSWORD, '192.0.2.7'), 'LOGIN_RATE_LIMITED');
  // Another address is not affected, and the account still works.
  assert.is((await box.accounts.login('admin', PASSWORD, '192.0.2.8')).user.username, 'admin');
  await box.close();
});

test('sessions and tokens expire; expired ones are refused and purged', async () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const box = await open(() => now);
  const { session } = await box.accounts.setup('admin', PASSWORD);
  const { token, info } = await box.accounts.createToken('admin', 'script', 1);
  assert.match(token, /^fet_/);
  assert.is((await box.accounts.authenticate(token)).kind, 'token');
  now += 2 * 3_600_000; // session TTL is 1 h
  await rejects(box.accounts.authenticate(session), 'CREDENTIAL_EXPIRED');
  assert.is((await box.accounts.authenticate(token)).credentialId, info.id);
  now += 2 * 86_400_000;
  assert.is(await box.accounts.purgeExpired(), 1);
  await rejects(box.accounts.authenticate(token), 'INVALID_CREDENTIAL');
  await box.close();
});

test('tokens: listed without secrets, revoked by their owner or an admin only', async () => {
  const box = await open();
  await box.accounts.setup('admin', PASSWORD);
  await box.accounts.createUser('kid', PASSWORD, 'family');
  const mine = await box.accounts.createToken('kid', 'tablet');
  const list = await box.accounts.listTokens('kid');
  assert.is(list.length, 1);
  const secret = mine.token.slice('fet_'.length + 16 + 1); // base64url: may itself contain '_'
  assert.is(secret.length, 43);
  assert.not.ok(JSON.stringify(list).includes(secret));
  await rejects(box.accounts.revokeToken(mine.info.id, { username: 'other', role: 'family' }), 'TOKEN_NOT_FOUND');
  await box.accounts.revokeToken(mine.info.id, { username: 'admin', role: 'admin' });
  await rejects(box.accounts.authenticate(mine.token), 'INVALID_CREDENTIAL');
  await box.close();
});

test('password changes sign out other sessions; deleting a user revokes everything', async () => {
  const box = await open();
  await box.accounts.setup('admin', PASSWORD);
  await box.accounts.createUser('mum', PASSWORD, 'family');
  const phone = await box.accounts.login('mum', PASSWORD);
  const laptop = await box.accounts.login('mum', PASSWORD);
  const token = await box.accounts.createToken('mum', 'script');
  const laptopId = (await box.accounts.authenticate(laptop.session)).credentialId;
  await rejects(box.accounts.changePassword('mum', 'not it', 'new passphrase!', laptopId), 'FORBIDDEN');
  await box.accounts.changePassword('mum', PASSWORD, 'new passphrase!', laptopId);
  await rejects(box.accounts.authenticate(phone.session), 'INVALID_CREDENTIAL');
  assert.is((await box.accounts.authenticate(laptop.session)).user.username, 'mum');
  assert.is((await box.accounts.authenticate(token.token)).kind, 'token');
  await box.accounts.deleteUser('mum');
  await rejects(box.accounts.authenticate(laptop.session), 'INVALID_CREDENTIAL');
  await rejects(box.accounts.authenticate(token.token), 'INVALID_CREDENTIAL');
  await box.close();
});

test('the last admin can be neither demoted nor deleted', async () => {
  const box = await open();
  await box.accounts.setup('admin', PASSWORD);
  await rejects(box.accounts.updateUser('admin', { role: 'family' }), 'LAST_ADMIN');
  await rejects(box.accounts.deleteUser('admin'), 'LAST_ADMIN');
  await box.accounts.createUser('admin2', PASSWORD, 'admin');
  assert.is((await box.accounts.updateUser('admin', { role: 'installer' })).role, 'installer');
  await rejects(box.accounts.deleteUser('admin2'), 'LAST_ADMIN');
  await rejects(box.accounts.createUser('admin2', PASSWORD, 'family'), 'USER_EXISTS');
  await rejects(box.accounts.deleteUser('nobody'), 'USER_NOT_FOUND');
  await box.close();
});

test.run();

// Secrets the box keeps only as hashes. Passwords: scrypt (a memory-hard KDF, RFC 7914), stored as
// `scrypt$N$r$p$salt$hash` so the cost can rise later without a migration. Stream keys: random,
// stored as SHA-256 (they are long random tokens, not guessable words).
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const scrypt = (password: string, salt: Buffer, keylen: number, options: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) =>
    scryptCb(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))),
  );

const defaultOptions = {
  N: 2 ** 15, // cost: ~50-100 ms on a small box, 32 MiB of memory
  r: 8,
  p: 1,
  keyLength: 32, // bytes
  saltLength: 16, // bytes
};

export async function hashPassword(password: string): Promise<string> {
  const { N, r, p, keyLength, saltLength } = defaultOptions;
  const salt = randomBytes(saltLength);
  const key = await scrypt(password, salt, keyLength, { N, r, p, maxmem: 128 * N * r * 2 });
  return ['scrypt', N, r, p, salt.toString('base64'), key.toString('base64')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64');
  const N = Number(n);
  const actual = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, {
    N,
    r: Number(r),
    p: Number(p),
    maxmem: 128 * N * Number(r) * 2,
  });
  return timingSafeEqual(actual, expected);
}

/** A hash to check against when the account does not exist, so timing does not tell. */
export const dummyHash = hashPassword(randomBytes(16).toString('hex'));

export function hashStreamKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** A new stream key: 144 random bits, URL-safe. Only its hash is stored. */
export function newStreamKey(): { key: string; keyHash: string } {
  const key = randomBytes(18).toString('base64url');
  return { key, keyHash: hashStreamKey(key) };
}

/** Whether `key` hashes to `expected`, in constant time. */
export function streamKeyMatches(key: string, expected: string): boolean {
  const actual = hashStreamKey(key);
  return actual.length === expected.length && timingSafeEqual(Buffer.from(actual), Buffer.from(expected));
}

// Browsers paired for remote access. A user asks the box for an invitation on the LAN (shown as
// a QR code or link: a one-time secret, of which only a SHA-256 is stored); the browser that opens
// it makes an ECDSA P-256 key pair and hands its public key over the box's own encrypted channel.
// From then on each of its remote offers is signed with that key: the box keeps no secret of the
// browser at all, and the operator who relays the offers cannot make one.
import { createHash, createPublicKey, randomBytes, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import type { Collection, Store } from '../../lib/store.ts';
import { BadRequestError, NotFoundError, UnauthorizedError } from '../../lib/errors.ts';
import type { Role } from '../../lib/permissions.ts';
import type { BrowserInvitation, PairedBrowser } from './accounts.schemas.ts';

interface InvitationRecord {
  id: string;
  username: string;
  secretHash: string;
  expiresAt: string;
}

interface BrowserRecord extends PairedBrowser {
  /** SPKI DER, base64: what WebCrypto exports as "spki". */
  publicKey: string;
}

const INVITATION_TTL_MS = 15 * 60_000;
const LAST_USED_RESOLUTION_MS = 60_000;
const sha256 = (text: string) => createHash('sha256').update(text).digest();

export class PairedBrowsers {
  private readonly invitations: Collection<InvitationRecord>;
  private readonly browsers: Collection<BrowserRecord>;
  /** Parsed public keys, by browser id (parsing one costs more than checking a signature). */
  private readonly keys = new Map<string, KeyObject>();

  constructor(
    store: Store,
    private readonly userRole: (username: string) => Promise<Role | undefined>,
    private readonly now: () => number = Date.now,
  ) {
    this.invitations = store.collection<InvitationRecord>('browser-invitations');
    this.browsers = store.collection<BrowserRecord>('paired-browsers');
  }

  async invite(username: string): Promise<BrowserInvitation> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const expiresAt = new Date(this.now() + INVITATION_TTL_MS).toISOString();
    await this.invitations.put(id, { id, username, secretHash: sha256(secret).toString('hex'), expiresAt });
    return { invitation: id, secret, expiresAt };
  }

  /** Whether an invitation is open (a pairing offer names it before any secret is shown). */
  async isOpen(id: string): Promise<boolean> {
    const record = await this.invitations.get(id);
    return Boolean(record && Date.parse(record.expiresAt) > this.now());
  }

  /** Pairs a browser with the invitation's user; the invitation is used up. */
  async pair(input: { invitation: string; secret: string; publicKey: string; name: string }): Promise<PairedBrowser> {
    const record = await this.invitations.get(input.invitation);
    if (
      !record ||
      Date.parse(record.expiresAt) <= this.now() ||
      !timingSafeEqual(sha256(input.secret), Buffer.from(record.secretHash, 'hex'))
    )
      throw new UnauthorizedError(
        'The invitation is unknown, used or expired: ask the box for a new one',
        'BAD_INVITATION',
      );
    const key = publicKeyOf(input.publicKey);
    await this.invitations.del(record.id);
    const browser: BrowserRecord = {
      id: randomBytes(8).toString('hex'),
      username: record.username,
      name: input.name,
      publicKey: key.export({ format: 'der', type: 'spki' }).toString('base64'),
      pairedAt: new Date(this.now()).toISOString(),
      lastUsedAt: null,
    };
    await this.browsers.put(browser.id, browser);
    return publicOf(browser);
  }

  async list(username?: string): Promise<PairedBrowser[]> {
    return (await this.browsers.values()).filter((b) => !username || b.username === username).map(publicOf);
  }

  /** Owners unpair their own browsers; admins anyone's. */
  async revoke(id: string, by: { username: string; role: Role }): Promise<PairedBrowser> {
    const record = await this.browsers.get(id);
    if (!record || (record.username !== by.username && by.role !== 'admin'))
      throw new NotFoundError('Paired browser', id);
    await this.browsers.del(id);
    this.keys.delete(id);
    return publicOf(record);
  }

  async revokeAllOf(username: string): Promise<string[]> {
    const gone = (await this.browsers.values()).filter((b) => b.username === username);
    for (const b of gone) {
      await this.browsers.del(b.id);
      this.keys.delete(b.id);
    }
    return gone.map((b) => b.id);
  }

  /**
   * Who signed a remote offer: the browser's user with their role now. The signature is ECDSA
   * P-256 with SHA-256 over the text, as WebCrypto makes it (r and s, 64 bytes).
   */
  async signer(
    browserId: string,
    signed: string,
    signature: string,
  ): Promise<{ username: string; role: Role; browser: string }> {
    const record = await this.browsers.get(browserId);
    if (!record) throw new UnauthorizedError('This browser is not paired with the box (or was unpaired)', 'NOT_PAIRED');
    let key = this.keys.get(browserId);
    if (!key) this.keys.set(browserId, (key = publicKeyOf(record.publicKey)));
    const ok = verify(
      'sha256',
      Buffer.from(signed),
      { key, dsaEncoding: 'ieee-p1363' },
      Buffer.from(signature, 'base64'),
    );
    if (!ok) throw new UnauthorizedError("The offer is not signed by this browser's key", 'BAD_SIGNATURE');
    const role = await this.userRole(record.username);
    if (!role) throw new UnauthorizedError('The account no longer exists', 'NOT_PAIRED');
    const lastUsed = record.lastUsedAt ? Date.parse(record.lastUsedAt) : 0;
    if (this.now() - lastUsed > LAST_USED_RESOLUTION_MS)
      await this.browsers.put(
        record.id,
        { ...record, lastUsedAt: new Date(this.now()).toISOString() },
        { sync: false },
      );
    return { username: record.username, role, browser: record.id };
  }

  async purgeExpired(): Promise<void> {
    for (const i of await this.invitations.values())
      if (Date.parse(i.expiresAt) <= this.now()) await this.invitations.del(i.id);
  }
}

function publicKeyOf(spki: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new BadRequestError('publicKey: not an SPKI key (base64 of DER)', 'BAD_PUBLIC_KEY');
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new BadRequestError('publicKey: must be ECDSA on P-256', 'BAD_PUBLIC_KEY');
  return key;
}

const publicOf = ({ id, username, name, pairedAt, lastUsedAt }: BrowserRecord): PairedBrowser => ({
  id,
  username,
  name,
  pairedAt,
  lastUsedAt,
});

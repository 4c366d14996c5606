// What a cloud target and the upload policy are, as the API and the bus see them.
import { z } from 'zod';
import { TimeOfDay } from '../../lib/hours.ts';
import { slugId } from '../../lib/ids.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const TargetId = slugId('target id');

const HttpUrl = z
  .string()
  .max(1024)
  .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), { message: 'an http:// or https:// URL' });

/** A key prefix inside the bucket or container, without leading or trailing '/'. */
const Prefix = z
  .string()
  .max(200)
  .regex(/^([\w.-]+(\/[\w.-]+)*)?$/, 'path segments of letters, digits, "-", "_", "." separated by "/"')
  .default('');

/** Any S3 API: AWS, MinIO, Wasabi, Ceph. */
export const S3Target = z.strictObject({
  id: TargetId,
  type: z.literal('s3'),
  /** e.g. https://s3.eu-west-1.amazonaws.com or http://192.168.1.5:9000 */
  endpoint: HttpUrl,
  region: z.string().max(64).default('us-east-1'),
  bucket: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 lower-case letters, digits, ".", "-")'),
  accessKey: z.string().min(1).max(256),
  secretKey: z.string().min(1).max(256),
  /** Path-style URLs (MinIO and most S3-compatible servers); false: virtual-hosted (AWS). */
  pathStyle: z.boolean().default(true),
  prefix: Prefix,
  enabled: z.boolean().default(true),
});

/** Azure Blob Storage with an account key. */
export const AzureTarget = z.strictObject({
  id: TargetId,
  type: z.literal('azure'),
  /** The account's blob endpoint: https://<account>.blob.core.windows.net, or Azurite's http://host:port/<account> */
  endpoint: HttpUrl,
  accountName: z.string().regex(/^[a-z0-9]{3,24}$/, 'a storage account name (3-24 lower-case letters and digits)'),
  accountKey: z.string().min(1).max(256),
  container: z
    .string()
    .regex(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, 'a container name (3-63 lower-case letters, digits, "-")'),
  prefix: Prefix,
  enabled: z.boolean().default(true),
});

export const Target = z.discriminatedUnion('type', [S3Target, AzureTarget]);
export type Target = z.output<typeof Target>;

/** Secrets never leave the box: answers and logs carry "***" instead. */
/** A target as answers show it: as stored, its secret as "***". */
export const PublicTarget = z.discriminatedUnion('type', [
  S3Target.extend({ secretKey: z.literal('***') }),
  AzureTarget.extend({ accountKey: z.literal('***') }),
]);
export type PublicTarget = z.output<typeof PublicTarget>;
export function publicTarget(t: Target): PublicTarget {
  return t.type === 's3' ? { ...t, secretKey: '***' } : { ...t, accountKey: '***' };
}

/** What can go up. */
export const RESOURCES = ['events', 'snapshots', 'clips', 'recordings', 'audit'] as const;
export type Resource = (typeof RESOURCES)[number];

/** Local time of day when a resource may be sent; a window past midnight wraps (22:00-06:00). */
export const Window = z.strictObject({ from: TimeOfDay, to: TimeOfDay });

/** The subscription plan: what goes up, from which cameras, within what budget and when. */
export const Policy = z.strictObject({
  resources: z.array(z.enum(RESOURCES)).max(RESOURCES.length).default(['events', 'snapshots', 'clips', 'audit']),
  /** Empty: all. */
  cameras: z.array(z.string().max(32)).max(256).default([]),
  labels: z.array(z.string().max(40)).max(100).default([]),
  zones: z.array(z.string().max(32)).max(256).default([]),
  /** Most bytes enqueued per UTC day; past it items are kept only on the box (logged). null: no limit. */
  maxBytesPerDay: z.number().int().min(1024).nullable().default(null),
  /** Upload rate cap over all targets together, bytes/s. null: no cap. */
  bandwidthBytesPerSecond: z.number().int().min(1024).nullable().default(null),
  /** When each resource may be sent; absent: any time. */
  windows: z.partialRecord(z.enum(RESOURCES), Window).default({}),
  /**
   * The offsite tier, when recordings go up: all footage (continuous), or only the footage of
   * alert review items (with their pre- and post-roll).
   */
  recordingsScope: z.enum(['continuous', 'alerts']).default('continuous'),
  /** Days recordings are kept in the cloud: older ones are deleted there. null: kept until deleted there. */
  recordingsRetainDays: z.number().min(0.01).max(3650).nullable().default(null),
});
export type Policy = z.output<typeof Policy>;

/** What of the household's data the plan `next` lets go that `current` does not (empty: nothing). */
export function widening(current: Policy, next: Policy): string[] {
  const wider = (field: 'cameras' | 'labels' | 'zones') =>
    // An empty list means "all": from a list to all, or to a name not listed before, is wider.
    current[field].length > 0 && (next[field].length === 0 || next[field].some((x) => !current[field].includes(x)))
      ? [field]
      : [];
  return [
    ...(next.resources.some((r) => !current.resources.includes(r)) ? ['resources'] : []),
    ...(current.recordingsScope === 'alerts' && next.recordingsScope === 'continuous' ? ['recordingsScope'] : []),
    ...wider('cameras'),
    ...wider('labels'),
    ...wider('zones'),
  ];
}

/** Why a target or an item failed. */
export const FailureCode = z.enum([
  'DNS',
  'UNREACHABLE',
  'TIMEOUT',
  'AUTH',
  'NO_BUCKET',
  'CLOCK_SKEW',
  'SERVER',
  'UPLOAD_EXPIRED',
  'REJECTED',
]);
export type FailureCode = z.output<typeof FailureCode>;
const AgeSeconds = z.number().int().nullable().describe('seconds since the oldest was enqueued; null: none');

/** What the status answers (and broadcasts as sync.status.changed): the queue, its counters, each target. */
export const SyncStatus = z.object({
  queue: z.object({
    items: z.number().int(),
    bytes: z.number().int(),
    maxBytes: z.number().int(),
    oldestAgeSeconds: AgeSeconds,
  }),
  counters: z.object({
    dropped: z.number().int().describe('items dropped for a newer one worth as much or more'),
    overBudget: z.number().int().describe("items kept on the box: the day's budget was used"),
    refused: z.number().int().describe('items refused: the queue was full of items worth more'),
  }),
  waitingFor: z.array(z.string()).describe('services whose absence holds work back now (recorder, events)'),
  targets: z.array(
    z.object({
      id: z.string(),
      type: z.string(),
      enabled: z.boolean(),
      state: z.enum(['disabled', 'backing-off', 'sending', 'idle']),
      pendingItems: z.number().int(),
      pendingBytes: z.number().int(),
      oldestAgeSeconds: AgeSeconds,
      lastSuccessAt: z.string().nullable(),
      lastError: z.object({ at: z.string(), code: FailureCode, message: z.string() }).nullable(),
      nextTryAt: z.string().nullable(),
      failures: z.number().int(),
      sentItems: z.number().int(),
      sentBytes: z.number().int(),
      bytesPerSecond: z.number().int().nullable().describe("this target's recent upload rate; null: not measured yet"),
    }),
  ),
});
export type SyncStatus = z.output<typeof SyncStatus>;

/** One item waiting in the outbox, as the queue answers it. */
export const QueuedItem = z.object({
  id: z.string(),
  resource: z.enum(RESOURCES),
  camera: z.string().nullable(),
  name: z.string(),
  bytes: z.number().int(),
  enqueuedAt: z.string(),
  targets: z.record(
    z.string(),
    z.object({ attempts: z.number().int(), lastError: z.string().nullable(), partsSent: z.number().int() }),
  ),
});

export type QueuedItem = z.output<typeof QueuedItem>;

declare module '../../lib/bus.ts' {
  interface Actions {
    'sync.status': { input: Record<string, never>; answer: SyncStatus };
    'sync.queue': { input: { limit?: number }; answer: QueuedItem[] };
    'sync.policy': { input: Record<string, never>; answer: Policy };
    /** Internal: recordings (paths under media/) queued for the cloud, which retention keeps until they are up. */
    'sync.pinned': { input: Record<string, never>; answer: string[] };
    /** Internal: every recording (path under media/) queued for the cloud; the archive tier leaves them on the hot disk. */
    'sync.queuedRecordings': { input: Record<string, never>; answer: string[] };
  }
}

// The box's identity at its operator and the operator's endpoint (the ADMP broker). From the
// environment (FOGEDGE_ADMP_*, set per device by the fleet), else from a file the operator's
// factory image or the installer's first-run setup wrote. A box with neither runs fully local.
import { rm } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import type { Config } from './config.ts';
import { redactUrl } from '../lib/redact.ts';
import { writeDurably } from '../lib/durable-files.ts';

const Pem = z
  .string()
  .regex(/-----BEGIN [A-Z0-9 ]+-----[\s\S]+-----END [A-Z0-9 ]+-----/, 'a PEM block (-----BEGIN ...-----)');

/** What the installer gives in the first-run setup: certificates inline, never file paths. */
export const ProvisioningInput = z
  .strictObject({
    /** The operator's broker: mqtts://host:8883 (or mqtt://, wss://). */
    url: z.string().regex(/^(mqtts?|wss?):\/\/[^\s/?#]+(\/\S*)?$/, 'an MQTT URL: mqtts://host:8883, mqtt://, wss://'),
    /** The box's name at the operator; default: sync.boxId (from the hostname). */
    boxId: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, '1-63 lower-case letters, digits, dash')
      .optional(),
    username: z.string().min(1).max(256).optional(),
    password: z.string().min(1).max(1024).optional(),
    /** The operator's CA (PEM), when its certificate is not from a public CA. */
    ca: Pem.optional(),
    /** The box's client certificate and key (PEM), when the operator authenticates boxes by certificate. */
    cert: Pem.optional(),
    key: Pem.optional(),
    /** MQTT 5 by default (the broker's receive maximum is honoured); 4 is MQTT 3.1.1, for brokers without 5. */
    protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5),
    /** Every topic of this box lives under <topicRoot>/<boxId>/. */
    topicRoot: z
      .string()
      .regex(/^[\w-]+(\/[\w-]+)*$/, 'topic levels of letters, digits, _ or -')
      .default('fogedge/boxes'),
    /** Remote access (away from home): what the operator runs for it. */
    remote: z
      .strictObject({
        /** The broker as browsers reach it (MQTT over WebSocket), given to them in the pairing link. */
        browserUrl: z.string().regex(/^wss?:\/\/[^\s/?#]+(\/\S*)?$/, 'a WebSocket URL: wss://host/mqtt'),
        /** Where the operator hosts the web app for use away (its pairing links open there); default: the box's own address. */
        appUrl: z
          .string()
          .regex(/^https?:\/\/[^\s#]+$/, 'an http(s) URL with no #')
          .optional(),
        /** STUN servers: "stun:host:3478". */
        stun: z
          .array(z.string().regex(/^stun:[^\s:@]+(:\d+)?$/, 'stun:host:port'))
          .max(4)
          .default([]),
        /**
         * TURN servers ("turn:host:3478", "turn:host:443?transport=tcp") and the secret they share
         * with the box (coturn's static-auth-secret): each session gets its own credentials, valid
         * one hour (the TURN REST API's scheme), so no password of the operator's sits on the box.
         */
        turn: z
          .strictObject({
            urls: z
              .array(
                z
                  .string()
                  .regex(/^turns?:[^\s:@?]+(:\d+)?(\?transport=(udp|tcp))?$/, 'turn:host:port[?transport=udp|tcp]'),
              )
              .min(1)
              .max(4),
            secret: z.string().min(8).max(256),
          })
          .optional(),
      })
      .optional(),
  })
  .refine((p) => Boolean(p.cert) === Boolean(p.key), { message: 'cert and key go together', path: ['key'] });

/** The file may name PEM files instead (relative to the file), for images that ship them. */
const ProvisioningFile = ProvisioningInput.safeExtend({
  caFile: z.string().min(1).optional(),
  certFile: z.string().min(1).optional(),
  keyFile: z.string().min(1).optional(),
});

export type Provisioning = z.output<typeof ProvisioningInput> & { boxId: string };

export interface Provisioned {
  provisioning: Provisioning;
  /** Where it came from, for the status and the logs. */
  source: string;
}

export class ProvisioningError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`Invalid provisioning (${source}): ${problems.join('; ')}`);
    this.name = 'ProvisioningError';
  }
}

const ENV = {
  url: 'FOGEDGE_ADMP_URL',
  boxId: 'FOGEDGE_ADMP_BOX_ID',
  username: 'FOGEDGE_ADMP_USERNAME',
  password: 'FOGEDGE_ADMP_PASSWORD',
  caFile: 'FOGEDGE_ADMP_CA_FILE',
  certFile: 'FOGEDGE_ADMP_CERT_FILE',
  keyFile: 'FOGEDGE_ADMP_KEY_FILE',
  topicRoot: 'FOGEDGE_ADMP_TOPIC_ROOT',
  protocolVersion: 'FOGEDGE_ADMP_PROTOCOL_VERSION',
} as const;

export const provisioningFile = (config: Pick<Config, 'dataDir' | 'admp'>) =>
  path.resolve(config.dataDir, config.admp.provisioningFile ?? 'provisioning.json');

/** The provisioning in force, or null for a box that runs fully local. */
export function readProvisioning(
  config: Pick<Config, 'dataDir' | 'admp' | 'sync'>,
  env: Record<string, string | undefined> = process.env,
): Provisioned | null {
  if (env[ENV.url]) {
    const raw: Record<string, unknown> = Object.fromEntries(
      Object.entries(ENV).flatMap(([key, name]) => (env[name] ? [[key, env[name]]] : [])),
    );
    if (raw['protocolVersion']) raw['protocolVersion'] = Number(raw['protocolVersion']);
    return { provisioning: parse(raw, 'environment FOGEDGE_ADMP_*', process.cwd(), config), source: 'environment' };
  }
  const file = provisioningFile(config);
  if (!existsSync(file)) return null;
  const doc = YAML.parseDocument(readFileSync(file, 'utf8'));
  if (doc.errors.length)
    throw new ProvisioningError(
      file,
      doc.errors.map((e) => e.message),
    );
  return { provisioning: parse(doc.toJS(), file, path.dirname(file), config), source: file };
}

function parse(raw: unknown, source: string, dir: string, config: Pick<Config, 'sync'>): Provisioning {
  const parsed = ProvisioningFile.safeParse(raw);
  if (!parsed.success)
    throw new ProvisioningError(
      source,
      parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    );
  const { caFile, certFile, keyFile, ...rest } = parsed.data;
  const read = (file: string | undefined, field: string) => {
    if (!file) return undefined;
    try {
      return readFileSync(path.resolve(dir, file), 'utf8');
    } catch (err) {
      throw new ProvisioningError(source, [`${field}: cannot read ${file} (${(err as NodeJS.ErrnoException).code})`]);
    }
  };
  const withFiles = {
    ...rest,
    ca: rest.ca ?? read(caFile, 'caFile'),
    cert: rest.cert ?? read(certFile, 'certFile'),
    key: rest.key ?? read(keyFile, 'keyFile'),
  };
  const checked = ProvisioningInput.safeParse(
    Object.fromEntries(Object.entries(withFiles).filter(([, v]) => v !== undefined)),
  );
  if (!checked.success)
    throw new ProvisioningError(
      source,
      checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`),
    );
  return { ...checked.data, boxId: checked.data.boxId ?? config.sync.boxId };
}

/** The first-run setup's answer: written whole or not at all, readable by the box only. */
export async function writeProvisioning(
  config: Pick<Config, 'dataDir' | 'admp'>,
  input: z.output<typeof ProvisioningInput> | null,
): Promise<void> {
  const file = provisioningFile(config);
  if (!input) return rm(file, { force: true });
  await writeDurably(file, JSON.stringify(input, null, 2), { mode: 0o600 });
}

/** What the API and the logs may show: no password, no key. */
export function publicProvisioning(p: Provisioning) {
  return {
    url: redactUrl(p.url),
    boxId: p.boxId,
    username: p.username ?? null,
    topicRoot: p.topicRoot,
    clientCertificate: Boolean(p.cert),
    customCa: Boolean(p.ca),
    remoteAccess: p.remote ? { browserUrl: p.remote.browserUrl, turn: Boolean(p.remote.turn) } : null,
  };
}

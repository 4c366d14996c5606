// What the USP controller offers others: firmware campaigns (the operator's and the installer's
// API) and the images it hosts for its cameras.
import { z } from 'zod';
import { DeviceId } from '../devices/devices.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export interface TargetState {
  endpointId: string;
  device: string;
  state: 'pending' | 'downloading' | 'activating' | 'rebooting' | 'succeeded' | 'failed' | 'skipped';
  fromVersion: string | null;
  reason: string | null;
  updatedAt: string;
}

export interface Campaign {
  id: string;
  image: { sha256: string; version: string; model: string; bytes: number };
  concurrency: number;
  /** More failures than this stops the campaign: the cameras not yet started are skipped. */
  maxFailures: number;
  trialSeconds: number;
  state: 'running' | 'succeeded' | 'failed' | 'stopped';
  targets: Record<string, TargetState>;
  createdAt: string;
  finishedAt: string | null;
  by: string;
}

export const CampaignInput = z.strictObject({
  /** Where the signed image is (the vendor's or the operator's server); the box fetches it once and hosts it for its cameras. */
  url: z.url({ protocol: /^https?$/ }),
  sha256: z.string().regex(/^[a-fA-F0-9]{64}$/, '64 hex digits'),
  /** These cameras (device ids), or every camera of `model`, or every camera agent. */
  devices: z.array(DeviceId).min(1).max(1000).optional(),
  model: z.string().min(1).max(64).optional(),
  concurrency: z.number().int().min(1).max(16).default(2),
  maxFailures: z.number().int().min(0).max(1000).default(0),
  trialSeconds: z.number().int().min(10).max(3600).default(300),
});

export const ImageFileInput = z.strictObject({ file: z.string().regex(/^[a-f0-9]{64}-[a-f0-9]{32}\.img$/) });

declare module '../../lib/bus.ts' {
  interface Actions {
    /** The latest campaigns, newest first. */
    'usp.campaigns': { input: Record<string, never>; answer: Campaign[] };
    /** Where a hosted image is on this node's disk (the gateway serves it to the cameras). */
    'usp.imageFile': { input: z.input<typeof ImageFileInput>; answer: { path: string } };
  }
}

// Automations: when something happens (a trigger), if the site is as asked (conditions), do
// these things in order (actions). Each runs as its owner, with the owner's permissions, and
// leaves a trace of every run.
import { z } from 'zod';
import { slugId } from '../../lib/ids.ts';
import { TimeOfDay } from '../../lib/hours.ts';
import { scheduleProblem } from '../../lib/schedule.ts';
import { CHANNEL } from '../../lib/topics.ts';
import { Username } from '../accounts/accounts.schemas.ts';
import { CameraId, Recording } from '../cameras/cameras.schemas.ts';
import { DeviceId } from '../devices/devices.schemas.ts';
import { ModeId } from '../modes/modes.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const AutomationId = slugId('automation id');
const Label = z.string().min(1).max(40);
const Zone = z.string().regex(/^[\w-]{1,32}$/, 'letters, digits, _ or -');
/** Below a device's own topics: `state`, `contact`, `+/battery`, `#`. */
const DeviceTopic = z
  .string()
  .min(1)
  .max(200)
  .regex(
    /^([\w-]+|\+)(\/([\w-]+|\+))*(\/#)?$|^#$/,
    'a topic below the device: levels of letters, digits, _ or -, + or a final #',
  );
const Cron = z
  .string()
  .max(100)
  .superRefine((value, ctx) => {
    const problem = scheduleProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const Scalar = z.union([z.string().max(200), z.number(), z.boolean()]);
/** A field of a JSON payload: `contact`, `battery.level`. */
const FieldPath = z
  .string()
  .regex(/^[\w-]+(\.[\w-]+)*$/, 'names joined by dots, e.g. contact or battery.level')
  .max(100);

/** A device message's test: its whole text, or one field of its JSON (compared as text). */
export const PayloadMatch = z.strictObject({
  field: FieldPath.optional(),
  equals: Scalar,
});

export const Trigger = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('event'),
    /** start: the object appears; end: it is gone; loiter: it has stayed loiterSeconds. */
    on: z.enum(['start', 'end', 'loiter']).default('start'),
    camera: CameraId.optional(),
    label: Label.optional(),
    zone: Zone.optional(),
    minScore: z.number().min(0).max(1).optional(),
    loiterSeconds: z.number().int().min(1).max(86_400).default(30),
  }),
  z.strictObject({
    kind: z.literal('count'),
    camera: CameraId,
    label: Label,
    zone: Zone.optional(),
    /** Fires when the count of objects goes from at most `above` to more, or from at least `below` to fewer. */
    above: z.number().int().min(0).max(1000).optional(),
    below: z.number().int().min(1).max(1000).optional(),
  }),
  z.strictObject({
    kind: z.literal('device.message'),
    device: DeviceId,
    topic: DeviceTopic.default('#'),
    match: PayloadMatch.optional(),
  }),
  z.strictObject({ kind: z.literal('device.connection'), device: DeviceId, state: z.enum(['online', 'offline']) }),
  z.strictObject({
    kind: z.literal('camera.status'),
    camera: CameraId.optional(),
    state: z.enum(['online', 'offline']),
  }),
  z.strictObject({ kind: z.literal('mode'), to: ModeId.optional(), from: ModeId.optional() }),
  z.strictObject({ kind: z.literal('schedule'), cron: Cron }),
  z.strictObject({
    kind: z.literal('sun'),
    event: z.enum(['sunrise', 'sunset']),
    offsetMinutes: z.number().int().min(-720).max(720).default(0),
  }),
  z.strictObject({ kind: z.literal('system'), what: z.enum(['disk.low', 'sync.stuck']) }),
]);
export type Trigger = z.output<typeof Trigger>;

export const Condition = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('mode'), in: z.array(ModeId).min(1).max(32) }),
  z.strictObject({ kind: z.literal('time'), from: TimeOfDay, to: TimeOfDay }),
  z.strictObject({
    kind: z.literal('device.state'),
    device: DeviceId,
    topic: z
      .string()
      .regex(/^[\w-]+(\/[\w-]+)*$/)
      .max(200)
      .default('state'),
    /** Compared with the state's value (contact: open/closed, switch: on/off) or, with `field`, a field of its JSON. */
    field: FieldPath.optional(),
    equals: Scalar,
  }),
  z.strictObject({
    kind: z.literal('no.event'),
    label: Label,
    camera: CameraId.optional(),
    minutes: z.number().int().min(1).max(1440),
  }),
]);
export type Condition = z.output<typeof Condition>;

export const Action = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('notify'),
    /** Default: the owner. */
    users: z.array(Username).max(50).default([]),
    title: z.string().min(1).max(200),
    message: z.string().max(2000).default(''),
    /** Whose picture goes with it: the trigger's event's, else this camera's now. */
    camera: CameraId.optional(),
  }),
  z.strictObject({ kind: z.literal('mode.set'), mode: ModeId }),
  z.strictObject({
    kind: z.literal('camera.set'),
    camera: CameraId,
    detection: z.boolean().optional(),
    recording: Recording.shape.mode.removeDefault().optional(),
    notifications: z.boolean().optional(),
  }),
  z.strictObject({
    /** Keep the camera's footage now: from preRollSeconds ago for `seconds`, as an alert (kept and sent up by the plan). */
    kind: z.literal('hold'),
    camera: CameraId,
    preRollSeconds: z.number().int().min(0).max(600).default(10),
    seconds: z.number().int().min(5).max(3600).default(300),
  }),
  z.strictObject({
    /** A clip to the cloud now: the last `seconds` and the next few, as an alert whose clip goes up. */
    kind: z.literal('clip'),
    camera: CameraId,
    seconds: z.number().int().min(5).max(300).default(20),
  }),
  z.strictObject({
    kind: z.literal('device.publish'),
    device: DeviceId,
    channel: z.string().regex(CHANNEL, 'lower-case words joined by /'),
    payload: z.string().max(64 * 1024),
  }),
  z.strictObject({
    kind: z.literal('webhook'),
    url: z.url({ protocol: /^https?$/ }),
    method: z.enum(['POST', 'PUT', 'GET']).default('POST'),
    /** Sent as JSON with the trigger's facts; GET sends none. */
    body: z.record(z.string(), Scalar).default({}),
  }),
  z.strictObject({ kind: z.literal('wait'), seconds: z.number().int().min(1).max(86_400) }),
]);
export type Action = z.output<typeof Action>;

export const AutomationInput = z.strictObject({
  id: AutomationId,
  name: z.string().min(1).max(80),
  enabled: z.boolean().default(true),
  triggers: z.array(Trigger).min(1).max(16),
  conditions: z.array(Condition).max(16).default([]),
  actions: z.array(Action).min(1).max(32),
  /** After a run, triggers are ignored for this long. */
  cooldownSeconds: z.number().int().min(0).max(86_400).default(0),
});

export const Automation = AutomationInput.extend({
  owner: z.string(),
  /** Why the box stopped it (a loop, a camera or device that is gone), until someone turns it on again. */
  disabledReason: z.string().nullable(),
  updatedAt: z.string(),
});
export type Automation = z.output<typeof Automation>;

export const StepResult = z.object({
  kind: z.string(),
  ok: z.boolean(),
  detail: z.string().optional(),
  at: z.string(),
  ms: z.number().optional(),
});
export type StepResult = z.infer<typeof StepResult>;

/** One run of an automation: what fired it, what each condition said, what each action did. */
export const Trace = z.object({
  run: z.string(),
  automation: z.string(),
  trigger: z.object({ kind: z.string(), detail: z.string() }),
  conditions: z.array(StepResult),
  actions: z.array(StepResult),
  result: z.enum(['running', 'waiting', 'done', 'failed', 'skipped', 'cooldown', 'stopped']),
  /** Why it was skipped or stopped. */
  reason: z.string().optional(),
  startedAt: z.string(),
  endedAt: z.string().nullable(),
});
export type Trace = z.infer<typeof Trace>;

export const IdInput = z.strictObject({ id: AutomationId });
export const TracesInput = z.strictObject({ id: AutomationId, limit: z.number().int().min(1).max(1000).default(20) });

declare module '../../lib/bus.ts' {
  interface Actions {
    'automations.list': { input: Record<string, never>; answer: Automation[] };
    'automations.get': { input: z.input<typeof IdInput>; answer: Automation };
    'automations.save': { input: z.input<typeof AutomationInput>; answer: Automation };
    'automations.remove': { input: z.input<typeof IdInput>; answer: { ok: true } };
    'automations.traces': { input: z.input<typeof TracesInput>; answer: Trace[] };
    /** Runs its actions now (its conditions are checked), as if triggered by hand. */
    'automations.run': { input: z.input<typeof IdInput>; answer: Trace };
  }
  interface Events {
    'automation.saved': { id: string; by: string };
    'automation.removed': { id: string; by: string };
    /** The box stopped an automation: a loop, or what it names is gone. */
    'automation.stopped': { id: string; reason: string };
    /** A run ended (its trace). */
    'automation.ran': Trace;
  }
}

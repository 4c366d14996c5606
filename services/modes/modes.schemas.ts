// The site's modes (Home, Away, Night, Vacation and the admin's own): one is active, and it
// changes what each camera does while it is. The cameras keep their own settings; a mode lays
// its changes over them, so leaving the mode brings the camera's settings back.
import { z } from 'zod';
import { slugId } from '../../lib/ids.ts';
import { scheduleProblem } from '../../lib/schedule.ts';
import { Username } from '../accounts/accounts.schemas.ts';
import { CameraId, Detection, Recording, ReviewRules } from '../cameras/cameras.schemas.ts';
// The bus maps this contract adds to (declaration merging needs the module in the program).
import type {} from '../../lib/bus.ts';

export const ModeId = slugId('mode id');
/** Modes every site has: they can be changed, not removed. */
export const BUILT_IN_MODES = ['home', 'away', 'night', 'vacation'] as const;

/** What a mode changes on a camera; what it leaves out stays as the camera has it. */
export const CameraOverrides = z.strictObject({
  detection: z
    .strictObject({ enabled: z.boolean().optional(), labels: Detection.shape.labels.removeDefault().optional() })
    .optional(),
  recording: z.strictObject({ mode: Recording.shape.mode.removeDefault().optional() }).optional(),
  review: z
    .strictObject({
      alertLabels: ReviewRules.shape.alertLabels.removeDefault().optional(),
      alertZones: ReviewRules.shape.alertZones.removeDefault().optional(),
    })
    .optional(),
  notifications: z.boolean().optional(),
});
export type CameraOverrides = z.output<typeof CameraOverrides>;

/** Every camera's entry: '*'. A camera's own entry is laid over it. */
export const ALL_CAMERAS = '*';

export const Mode = z.strictObject({
  id: ModeId,
  name: z.string().min(1).max(40),
  /** By camera id, or '*' for every camera. */
  cameras: z.record(z.union([CameraId, z.literal(ALL_CAMERAS)]), CameraOverrides).default({}),
  /** While the mode is on, only these users are notified (each by their own rules); null: everyone. */
  notifyUsers: z.array(Username).max(100).nullable().default(null),
});
export type Mode = z.output<typeof Mode>;

/** A switch by the clock: a cron expression in the box's local time (e.g. "0 22 * * *") and the mode. */
export const ScheduleEntry = z.strictObject({
  cron: z
    .string()
    .max(100)
    .superRefine((value, ctx) => {
      const problem = scheduleProblem(value);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  mode: ModeId,
});
export type ScheduleEntry = z.output<typeof ScheduleEntry>;
export const ScheduleInput = z.strictObject({ entries: z.array(ScheduleEntry).max(64) });

/** Who switched, and how. */
export const SwitchVia = z.enum(['http', 'mqtt', 'admp', 'cli', 'schedule', 'automation']);

export const SetInput = z.strictObject({
  mode: ModeId,
  /** Internal: a switch made by the box itself (its schedule, an automation) says so. */
  via: SwitchVia.optional(),
  /** Internal: the automations whose runs led here, for the automations' loop guard. */
  cause: z.array(z.string().max(64)).max(16).optional(),
});
export const IdInput = z.strictObject({ id: ModeId });

export const ActiveMode = z.object({
  id: z.string(),
  since: z.string(),
  by: z.string().describe('user name, or the schedule, or automation:<id>'),
  via: z.string(),
});
export type ActiveMode = z.infer<typeof ActiveMode>;

export const ModesAnswer = z.object({
  active: ActiveMode,
  modes: z.array(Mode.extend({ builtIn: z.boolean() })),
  schedule: z.array(ScheduleEntry),
});
export type ModesAnswer = z.infer<typeof ModesAnswer>;

/** A switch from one mode to another, as the bus tells it. */
export interface ModeChanged {
  from: string;
  to: string;
  by: string;
  via: string;
  at: string;
  cause?: string[];
}

declare module '../../lib/bus.ts' {
  interface Actions {
    'modes.list': { input: Record<string, never>; answer: ModesAnswer };
    /** The mode in force and its definition: what the cameras lay over their settings. */
    'modes.active': { input: Record<string, never>; answer: { active: ActiveMode; mode: Mode } };
    'modes.set': { input: z.input<typeof SetInput>; answer: { active: ActiveMode; changed: boolean } };
    'modes.save': { input: z.input<typeof Mode>; answer: Mode };
    'modes.remove': { input: z.input<typeof IdInput>; answer: { ok: true } };
    'modes.setSchedule': { input: z.input<typeof ScheduleInput>; answer: ScheduleEntry[] };
  }
  interface Events {
    /** The site switched mode. */
    'mode.changed': ModeChanged;
    /**
     * The mode in force and what it changes, with every mode's id: at the service's start, at each
     * switch, and when modes are edited, added or removed.
     */
    'mode.applied': { active: ActiveMode; mode: Mode; options: string[] };
  }
}

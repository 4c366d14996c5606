// What each action of an automation does, as its owner: every call goes through the action's own
// permission check with the owner as the caller, so an automation can do no more than its owner.
import type { ServiceBroker } from 'moleculer';
import type { Caller } from '../../lib/actions.ts';
import { call } from '../../lib/bus.ts';
import { can } from '../../lib/permissions.ts';
import type { Action, Automation } from './automations.schemas.ts';
import type { Holds } from './holds.ts';
import { describeFact, type Fact } from './triggers.ts';

export interface StepContext {
  automation: Automation;
  /** The owner, with the role they have now. */
  caller: Caller & { username: string };
  fact: Fact;
  /** The automations whose runs led to this one (loop guard). */
  chain: string[];
  broker: ServiceBroker;
  holds: Holds;
  webhookAllow: string[];
}

export type Step = Exclude<Action, { kind: 'wait' }>;

/** Whether a webhook's address starts with one the admin allowed. */
export const webhookAllowed = (url: string, allow: string[]) => allow.some((prefix) => url.startsWith(prefix));

/** {camera}, {label}, {device}, {payload}, {mode}, {trigger} in a title or message, from what fired. */
function fill(text: string, fact: Fact): string {
  const facts: Record<string, string> = { trigger: describeFact(fact) };
  if (fact.kind === 'event') Object.assign(facts, { camera: fact.event.camera, label: fact.event.label });
  if (fact.kind === 'count' || fact.kind === 'camera.status') facts['camera'] = fact.camera;
  if (fact.kind === 'device.message')
    Object.assign(facts, { device: fact.device, payload: fact.payload.slice(0, 200) });
  if (fact.kind === 'device.connection') facts['device'] = fact.device;
  if (fact.kind === 'mode') facts['mode'] = fact.to;
  return text.replace(/\{(\w+)\}/g, (whole, key: string) => facts[key] ?? whole);
}

/** Does one action; answers what it did, for the trace, or throws why it could not. */
export async function perform(step: Step, s: StepContext): Promise<string> {
  const as = { meta: { caller: s.caller }, retries: 0, timeout: 15_000 };
  switch (step.kind) {
    case 'notify': {
      const users = step.users.length ? step.users : [s.caller.username];
      const event = s.fact.kind === 'event' ? s.fact.event : undefined;
      const camera = step.camera ?? event?.camera;
      const picture =
        !event && camera && can(s.caller.role!, 'live.view')
          ? await call(s.broker, 'streams.snapshot', { id: camera }, { timeout: 5000, retries: 0 }).catch(
              () => undefined,
            )
          : undefined;
      const { sent } = await call(s.broker, 'mqtt.notifyUsers', {
        users,
        title: fill(step.title, s.fact),
        message: fill(step.message, s.fact),
        ...(camera ? { camera } : {}),
        ...(event ? { event: event.id } : {}),
        ...(picture ? { snapshotBase64: picture.jpegBase64 } : {}),
        from: `automation:${s.automation.id}`,
      });
      if (sent.length === 0) throw new Error(`none of ${users.join(', ')} may be told of events (or they are gone)`);
      return `told ${sent.join(', ')}${event ? ` with event ${event.id}'s picture` : picture ? ` with ${camera}'s picture` : ''}`;
    }
    case 'mode.set': {
      const { changed } = await call(
        s.broker,
        'modes.set',
        { mode: step.mode, via: 'automation', cause: [...s.chain, s.automation.id] },
        as,
      );
      return changed ? `mode set to ${step.mode}` : `mode was ${step.mode} already`;
    }
    case 'camera.set': {
      const { camera, detection, recording, notifications } = step;
      await call(
        s.broker,
        'cameras.update',
        {
          id: camera,
          ...(detection === undefined ? {} : { detection: { enabled: detection } }),
          ...(recording === undefined ? {} : { recording: { mode: recording } }),
          ...(notifications === undefined ? {} : { notifications }),
        } as never,
        as,
      );
      return `${camera}: ${JSON.stringify({ detection, recording, notifications })}`;
    }
    case 'hold':
    case 'clip': {
      // Keeping footage is a say over recordings: the owner must be allowed to see them.
      if (!can(s.caller.role!, 'recordings.view'))
        throw new Error(`${s.caller.username} (${s.caller.role}) may not keep recordings`);
      const [preRoll, seconds] = step.kind === 'hold' ? [step.preRollSeconds, step.seconds] : [step.seconds, 5];
      const id = await s.holds.start(step.camera, preRoll, seconds, `automation:${s.automation.id}`);
      return `${step.camera}: footage from ${preRoll} s ago kept for ${seconds} s more (event ${id})`;
    }
    case 'device.publish':
      await call(s.broker, 'mqtt.command', { device: step.device, channel: step.channel, payload: step.payload }, as);
      return `${step.payload.slice(0, 60)} to ${step.device}/cmd/${step.channel}`;
    case 'webhook': {
      if (!webhookAllowed(step.url, s.webhookAllow))
        throw new Error(`${step.url} is not under an address automations.webhookAllow names`);
      const res = await fetch(step.url, {
        method: step.method,
        redirect: 'manual', // an allowed address may not send the box elsewhere
        signal: AbortSignal.timeout(5000),
        ...(step.method === 'GET'
          ? {}
          : {
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({
                automation: s.automation.id,
                trigger: describeFact(s.fact),
                at: new Date().toISOString(),
                ...step.body,
              }),
            }),
      });
      await res.body?.cancel();
      if (res.status >= 300) throw new Error(`${step.method} ${step.url}: HTTP ${res.status}`);
      return `${step.method} ${step.url}: HTTP ${res.status}`;
    }
  }
}

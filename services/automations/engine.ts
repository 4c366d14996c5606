// The automations' engine: which automations a fact fires, their conditions, their actions in
// order, and a trace of each run. One run of an automation at a time (a trigger while it runs
// is ignored), a cooldown after each, and the loop guards: an automation led back to itself, or
// running more than maxRunsPerMinute, is stopped and flagged.
//
// A run is on disk from its first action: the action it is doing (so a restart never does one
// twice) and, in a wait, when it goes on (so a restart does what was due, once).
import { randomUUID } from 'node:crypto';
import type { LoggerInstance } from 'moleculer';
import type { Role } from '../../lib/permissions.ts';
import type { Collection } from '../../lib/store.ts';
import type { Action, Automation, StepResult, Trace } from './automations.schemas.ts';
import { check, type SiteNow } from './conditions.ts';
import { perform, type StepContext } from './steps.ts';
import { describeFact, fires, indexKeyOf, indexKeyOfTrigger, type Fact } from './triggers.ts';

/** The longest chain of automations leading to one another before the guard stops it. */
const MAX_CHAIN = 8;

export interface RunRecord {
  trace: Trace;
  fact: Fact;
  chain: string[];
  /** The actions as they were when the run began. */
  actions: Action[];
  owner: string;
  step: number;
  /** The action being done when the box stopped (not done again). */
  doing: number | null;
  /** In a wait: when the run goes on (ms). */
  resumeAt: number | null;
}

export interface EngineParts {
  runs: Collection<RunRecord>;
  traces: Collection<Trace>;
  roleOf(username: string): Promise<Role | undefined>;
  site(): SiteNow;
  steps: Pick<StepContext, 'broker' | 'holds' | 'webhookAllow'>;
  maxRunsPerMinute: number;
  tracesKept: number;
  /** The box stops an automation (a loop, its owner gone): kept with the reason, and told. */
  stopAutomation(id: string, reason: string): Promise<void>;
  ran(trace: Trace): void;
  log: LoggerInstance;
}

const now = () => new Date().toISOString();
const traceKey = (t: Trace) => `${t.automation}!${String(Date.parse(t.startedAt)).padStart(15, '0')}!${t.run}`;

export class Engine {
  private readonly automations = new Map<string, Automation>();
  /** Automations by what fires them (a kind of fact, or a device's messages). */
  private readonly index = new Map<string, Set<string>>();
  private readonly lastRunAt = new Map<string, number>();
  /** Per automation, when its recent runs began (the rate guard). */
  private readonly recent = new Map<string, number[]>();
  private readonly active = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly work = new Set<Promise<unknown>>();
  private stopping = false;

  constructor(private readonly p: EngineParts) {}

  set(a: Automation): void {
    this.remove(a.id);
    this.automations.set(a.id, a);
    for (const t of a.triggers) {
      const key = indexKeyOfTrigger(t);
      this.index.set(key, (this.index.get(key) ?? new Set()).add(a.id));
    }
  }

  remove(id: string): void {
    const before = this.automations.get(id);
    if (!before) return;
    for (const t of before.triggers) this.index.get(indexKeyOfTrigger(t))?.delete(id);
    this.automations.delete(id);
  }

  get(id: string): Automation | undefined {
    return this.automations.get(id);
  }

  all(): Automation[] {
    return [...this.automations.values()];
  }

  /** Something happened: each enabled automation it fires runs (unless it runs already or cools down). */
  handle(fact: Fact, chain: string[] = []): void {
    if (this.stopping) return;
    const ids = this.index.get(indexKeyOf(fact));
    if (!ids?.size) return;
    for (const id of ids) {
      const a = this.automations.get(id);
      if (!a?.enabled || a.disabledReason || !a.triggers.some((t) => fires(t, fact))) continue;
      // Led back to itself: a loop, even while its first run is still going.
      const loop = chain.includes(a.id)
        ? `it led back to itself (${[...chain, a.id].join(' → ')})`
        : chain.length >= MAX_CHAIN
          ? `a chain of ${chain.length} automations led to it (${chain.join(' → ')})`
          : undefined;
      if (loop) {
        this.track(this.halt(a, this.newTrace(a, fact), loop, this.active.has(id)));
        continue;
      }
      if (this.active.has(id)) continue;
      if (a.cooldownSeconds && Date.now() - (this.lastRunAt.get(id) ?? 0) < a.cooldownSeconds * 1000) continue;
      this.track(this.start(a, fact, chain));
    }
  }

  /** Runs an automation now, as if triggered (its conditions are checked); answers its trace once it ends or waits. */
  runNow(a: Automation, fact: Fact): Promise<Trace> {
    return this.track(this.start(a, fact, []));
  }

  /** Runs left on disk by the last stop: each goes on from where it was, never doing an action twice. */
  async resume(): Promise<void> {
    for await (const [id, rec] of this.p.runs.entries()) {
      this.active.add(rec.trace.automation);
      if (rec.doing !== null) {
        // Stopped in the middle of it: whether it happened is unknown, so it is not done again.
        rec.trace.actions.push(
          result(rec.actions[rec.doing]!.kind, false, 'the box stopped while doing it: not done again'),
        );
        rec.step = rec.doing + 1;
        rec.doing = null;
      }
      this.track(this.advance(id, rec));
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.work]);
  }

  async traces(id: string, limit: number): Promise<Trace[]> {
    return this.p.traces.values({ gte: `${id}!`, lt: `${id}!~`, reverse: true, limit });
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.work.add(work);
    void work.finally(() => this.work.delete(work)).catch(() => undefined);
    return work;
  }

  private newTrace(a: Automation, fact: Fact): Trace {
    return {
      run: randomUUID(),
      automation: a.id,
      trigger: { kind: fact.kind, detail: describeFact(fact) },
      conditions: [],
      actions: [],
      result: 'running',
      startedAt: now(),
      endedAt: null,
    };
  }

  private async start(a: Automation, fact: Fact, chain: string[]): Promise<Trace> {
    const trace = this.newTrace(a, fact);
    this.active.add(a.id);
    try {
      // Too many runs: a loop through something the chain cannot see (a device that answers).
      const tooOften = this.overRate(a.id);
      if (tooOften) return await this.halt(a, trace, tooOften);
      const site = this.p.site();
      for (const c of a.conditions) {
        const answer = await check(c, site).catch((err: Error) => ({ ok: false, detail: err.message }));
        trace.conditions.push(result(c.kind, answer.ok, answer.detail));
        if (!answer.ok)
          return await this.finish(a.id, null, { ...trace, result: 'skipped', reason: `${c.kind}: ${answer.detail}` });
      }
      this.lastRunAt.set(a.id, Date.now());
      const rec: RunRecord = {
        trace,
        fact,
        chain,
        actions: a.actions,
        owner: a.owner,
        step: 0,
        doing: null,
        resumeAt: null,
      };
      return await this.advance(trace.run, rec);
    } catch (err) {
      this.p.log.warn(`Automation ${a.id}: ${(err as Error).message}`);
      return this.finish(a.id, null, { ...trace, result: 'failed', reason: (err as Error).message });
    }
  }

  /** The run's actions from where it is, up to its end or its next wait. */
  private async advance(id: string, rec: RunRecord): Promise<Trace> {
    const a = this.automations.get(rec.trace.automation);
    if (!a)
      return this.finish(rec.trace.automation, id, {
        ...rec.trace,
        result: 'stopped',
        reason: 'the automation was removed',
      });
    const role = await this.p.roleOf(rec.owner).catch((err: Error) => err);
    if (role instanceof Error) {
      // The accounts service is away (starting, another node): the run waits on disk and tries again.
      this.p.log.warn(`Automation ${a.id}: its owner's role is not known now (${role.message}); trying again in 5 s`);
      this.timers.set(
        id,
        setTimeout(() => (this.timers.delete(id), this.track(this.advance(id, rec))), 5000),
      );
      return rec.trace;
    }
    if (!role) {
      await this.p.stopAutomation(a.id, `its owner ${rec.owner} is gone`);
      return this.finish(a.id, id, { ...rec.trace, result: 'stopped', reason: `its owner ${rec.owner} is gone` });
    }
    const context: StepContext = {
      ...this.p.steps,
      automation: a,
      caller: { username: rec.owner, role, via: 'automation' },
      fact: rec.fact,
      chain: rec.chain,
    };
    while (rec.step < rec.actions.length) {
      if (this.stopping) return rec.trace; // on disk: the next start goes on
      const action = rec.actions[rec.step]!;
      if (action.kind === 'wait') {
        if (rec.resumeAt === null) {
          rec.resumeAt = Date.now() + action.seconds * 1000;
          rec.trace.result = 'waiting';
          await this.p.runs.put(id, rec, { sync: true });
        }
        const waiting = rec.resumeAt - Date.now();
        if (waiting > 0) {
          this.timers.set(
            id,
            setTimeout(() => {
              this.timers.delete(id);
              this.track(this.advance(id, rec));
            }, waiting),
          );
          return rec.trace;
        }
        rec.trace.actions.push(result('wait', true, `${action.seconds} s`));
        rec.trace.result = 'running';
        rec.resumeAt = null;
        rec.step++;
        continue;
      }
      rec.doing = rec.step;
      // Not synced: a crash of the process keeps it (the OS has it); it costs no flush per action.
      await this.p.runs.put(id, rec, { sync: false });
      const started = Date.now();
      try {
        rec.trace.actions.push(result(action.kind, true, await perform(action, context), Date.now() - started));
      } catch (err) {
        rec.trace.actions.push(result(action.kind, false, (err as Error).message, Date.now() - started));
      }
      rec.doing = null;
      rec.step++;
    }
    const failed = rec.trace.actions.some((s) => !s.ok);
    return this.finish(a.id, id, { ...rec.trace, result: failed ? 'failed' : 'done' });
  }

  /** A loop guard stopped the automation: flagged, kept, told. `running`: a run of it goes on (it ends by itself). */
  private async halt(a: Automation, trace: Trace, reason: string, running = false): Promise<Trace> {
    await this.p.stopAutomation(a.id, reason);
    return this.finish(a.id, null, { ...trace, result: 'stopped', reason }, !running);
  }

  /** More runs in the last minute than allowed: why, or undefined. */
  private overRate(id: string): string | undefined {
    const t = Date.now();
    const runs = (this.recent.get(id) ?? []).filter((at) => t - at < 60_000);
    runs.push(t);
    this.recent.set(id, runs);
    return runs.length > this.p.maxRunsPerMinute
      ? `it ran ${runs.length} times in a minute (automations.maxRunsPerMinute ${this.p.maxRunsPerMinute}): a loop, or a trigger too wide`
      : undefined;
  }

  private async finish(automation: string, runId: string | null, trace: Trace, release = true): Promise<Trace> {
    const ended = { ...trace, endedAt: now() };
    if (release) this.active.delete(automation);
    try {
      if (runId) await this.p.runs.del(runId, { sync: true });
      await this.p.traces.put(traceKey(ended), ended, { sync: false });
      // The last tracesKept runs of each automation are kept.
      const old = await this.p.traces.keys({ gte: `${automation}!`, lt: `${automation}!~`, reverse: true });
      if (old.length > this.p.tracesKept) await this.p.traces.delMany(old.slice(this.p.tracesKept), { sync: false });
    } catch (err) {
      this.p.log.warn(`Automation ${automation}: its trace is not kept: ${(err as Error).message}`);
    }
    this.p.ran(ended);
    return ended;
  }
}

function result(kind: string, ok: boolean, detail: string, ms?: number): StepResult {
  return { kind, ok, detail, at: now(), ...(ms === undefined ? {} : { ms }) };
}

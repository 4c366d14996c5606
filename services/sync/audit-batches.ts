// The audit trail goes up in batches: each audited event is kept here as it happens, and every
// sync.auditBatchSeconds the entries kept so far go as one JSON-lines file.
import type { Collection } from '../../lib/store.ts';
import type { Intake, SyncParts } from './intake.ts';

export class AuditBatches {
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;

  constructor(
    private readonly s: SyncParts,
    private readonly intake: Intake,
    private readonly enabledTargets: () => string[],
    private readonly entries: Collection<Record<string, unknown>>,
  ) {}

  start(): void {
    this.timer = setInterval(
      () => void this.flush().catch((err: Error) => this.s.log.error(`sync: audit: ${err.message}`)),
      this.s.config.sync.auditBatchSeconds * 1000,
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }

  add(action: string, params: Record<string, unknown>): Promise<void> {
    const at = new Date().toISOString();
    return this.entries.put(`${at}-${String(this.seq++).padStart(9, '0')}`, { at, action, ...params });
  }

  async flush(): Promise<void> {
    const entries: Array<[string, Record<string, unknown>]> = [];
    for await (const entry of this.entries.entries()) entries.push(entry);
    if (entries.length === 0) return;
    const boxId = this.s.config.sync.boxId;
    if (this.enabledTargets().length && this.s.policy().resources.includes('audit')) {
      const first = String(entries[0]![1]['at'] ?? new Date().toISOString());
      const lines = entries.map(([, v]) => JSON.stringify(v)).join('\n') + '\n';
      await this.intake.enqueueBytes(
        {
          resource: 'audit',
          camera: null,
          name: `${boxId}/audit/${first.slice(0, 10)}/${first.replace(/[:.]/g, '-')}-${entries.length}.jsonl`,
          contentType: 'application/x-ndjson',
          metadata: { box: boxId, entries: String(entries.length) },
        },
        Buffer.from(lines),
      );
    }
    for (const [key] of entries) await this.entries.del(key, { sync: false });
  }
}

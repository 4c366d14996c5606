// The site's mode on the Live page: every mode as a button, the active one pressed; one tap
// switches (for those who may), and a switch made elsewhere shows at once.
import { api, can, formatTime } from '../api.ts';
import { useUpdates } from '../updates.ts';
import { Problem, useAction, useLoad } from './ui.tsx';
import type { ModesAnswer } from '../../../services/modes/modes.schemas.ts';

export function ModeBar() {
  const modes = useLoad(() => api<ModesAnswer>('/modes'));
  useUpdates(['mode.'], () => void modes.reload());
  const { error, run } = useAction(modes.reload);
  const active = modes.data?.active;
  if (!modes.data) return <Problem error={modes.error} />;
  return (
    <div class="mode-bar" role="group" aria-label="Mode">
      {modes.data.modes.map((m) => (
        <button
          type="button"
          key={m.id}
          data-mode={m.id}
          aria-pressed={m.id === active?.id}
          class={m.id === active?.id ? 'mode on' : 'mode'}
          disabled={!can('modes.switch')}
          onClick={() =>
            m.id !== active?.id && run(() => api('/modes/active', { method: 'PUT', body: { mode: m.id } }))
          }
        >
          {m.name}
        </button>
      ))}
      {active && (
        <small class="mode-since">
          since {formatTime(active.since)} · {active.by}
          {active.via === 'schedule' || active.via === 'automation' ? ` (${active.via})` : ''}
        </small>
      )}
      <Problem error={error} />
    </div>
  );
}

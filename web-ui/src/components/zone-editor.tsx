// Zones and masks drawn on the camera's snapshot: tap or click to set corners, finish to close
// the polygon. Points are kept relative to the frame (0..1), as the detector reads them.
import type { TargetedPointerEvent } from 'preact';
import { useState } from 'preact/hooks';
import { url } from '../api.ts';

type Point = [number, number];
export interface Shapes {
  zones: Array<{ name: string; points: Point[] }>;
  motionMasks: Point[][];
  objectMasks: Point[][];
}
type Layer = 'zone' | 'motion' | 'object';

const round = (n: number) => Math.round(Math.min(1, Math.max(0, n)) * 1000) / 1000;
const pointsAttr = (pts: Point[]) => pts.map(([x, y]) => `${x},${y}`).join(' ');

export function ZoneEditor({
  camera,
  value,
  onChange,
}: {
  camera: string;
  value: Shapes;
  onChange: (v: Shapes) => void;
}) {
  const [layer, setLayer] = useState<Layer>('zone');
  const [draft, setDraft] = useState<Point[]>([]);
  const [name, setName] = useState('');
  const [problem, setProblem] = useState<string>();

  const add = (e: TargetedPointerEvent<SVGSVGElement>) => {
    const r = e.currentTarget.getBoundingClientRect();
    setDraft([...draft, [round((e.clientX - r.left) / r.width), round((e.clientY - r.top) / r.height)]]);
  };
  const finish = () => {
    if (draft.length < 3) return setProblem('A shape needs at least 3 corners.');
    if (layer === 'zone') {
      if (!/^[\w-]{1,32}$/.test(name)) return setProblem('Name the zone first: letters, digits, _ or - (up to 32).');
      if (value.zones.some((z) => z.name === name)) return setProblem(`There is already a zone "${name}".`);
      onChange({ ...value, zones: [...value.zones, { name, points: draft }] });
      setName('');
    } else if (layer === 'motion') onChange({ ...value, motionMasks: [...value.motionMasks, draft] });
    else onChange({ ...value, objectMasks: [...value.objectMasks, draft] });
    setDraft([]);
    setProblem(undefined);
  };

  return (
    <div class="zone-editor">
      <div class="zone-tools">
        <select aria-label="What to draw" value={layer} onChange={(e) => setLayer(e.currentTarget.value as Layer)}>
          <option value="zone">Zone</option>
          <option value="motion">Motion mask (motion ignored)</option>
          <option value="object">Object mask (objects ignored)</option>
        </select>
        {layer === 'zone' && (
          <input
            aria-label="Zone name"
            placeholder="zone name, e.g. driveway"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        )}
        <button type="button" onClick={finish} disabled={draft.length === 0}>
          Finish shape ({draft.length})
        </button>
        <button type="button" onClick={() => setDraft(draft.slice(0, -1))} disabled={draft.length === 0}>
          Undo corner
        </button>
      </div>
      {problem && (
        <p class="problem" role="alert">
          {problem}
        </p>
      )}
      <div class="zone-canvas">
        <img src={url(`/cameras/${camera}/snapshot.jpg`)} alt="Camera picture to draw on" />
        <svg viewBox="0 0 1 1" preserveAspectRatio="none" onPointerDown={add} data-testid="zone-canvas">
          {value.zones.map((z) => (
            <polygon class="zone" points={pointsAttr(z.points)}>
              <title>{z.name}</title>
            </polygon>
          ))}
          {value.motionMasks.map((m) => (
            <polygon class="mask motion" points={pointsAttr(m)} />
          ))}
          {value.objectMasks.map((m) => (
            <polygon class="mask object" points={pointsAttr(m)} />
          ))}
          {draft.length > 0 && <polyline class="draft" points={pointsAttr(draft)} />}
          {draft.map(([x, y]) => (
            <circle class="corner" cx={x} cy={y} r={0.008} />
          ))}
        </svg>
      </div>
      <ul class="shapes">
        {value.zones.map((z, i) => (
          <li>
            Zone <strong>{z.name}</strong> ({z.points.length} corners)
            <button
              type="button"
              class="link"
              onClick={() => onChange({ ...value, zones: value.zones.filter((_, j) => j !== i) })}
            >
              remove
            </button>
          </li>
        ))}
        {value.motionMasks.map((_, i) => (
          <li>
            Motion mask {i + 1}
            <button
              type="button"
              class="link"
              onClick={() => onChange({ ...value, motionMasks: value.motionMasks.filter((__, j) => j !== i) })}
            >
              remove
            </button>
          </li>
        ))}
        {value.objectMasks.map((_, i) => (
          <li>
            Object mask {i + 1}
            <button
              type="button"
              class="link"
              onClick={() => onChange({ ...value, objectMasks: value.objectMasks.filter((__, j) => j !== i) })}
            >
              remove
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

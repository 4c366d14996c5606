// What an agent's Notify says, as the box keeps and shows it: one shape for every kind
// (TR-369 Notify: Event, ValueChange, OperationComplete), with the endpoint and the time.
export interface UspNotification {
  endpointId: string;
  device: string;
  at: string;
  subscriptionId: string;
  type: 'event' | 'valueChange' | 'operationComplete';
  /** The object (event, command) or parameter (value change) it is about. */
  path: string;
  /** Event name (Boot!) or command name (Download()); absent for a value change. */
  name?: string;
  /** Event arguments, the new value ({ value }), or a command's output arguments. */
  params: Record<string, string>;
  commandKey?: string;
  /** A command that failed: its USP error. */
  failure?: { code: number; message: string };
}

/** The box's own notify shape from the decoded Notify; null for a kind it does not keep. */
export function notificationOf(
  endpointId: string,
  device: string,
  notify: Record<string, any>,
  at = new Date().toISOString(),
): UspNotification | null {
  const base = { endpointId, device, at, subscriptionId: String(notify['subscriptionId'] ?? '') };
  if (notify['event']) {
    const e = notify['event'];
    return {
      ...base,
      type: 'event',
      path: String(e.objPath ?? ''),
      name: String(e.eventName ?? ''),
      params: stringsOf(e.params),
    };
  }
  if (notify['valueChange']) {
    const v = notify['valueChange'];
    return {
      ...base,
      type: 'valueChange',
      path: String(v.paramPath ?? ''),
      params: { value: String(v.paramValue ?? '') },
    };
  }
  if (notify['operComplete']) {
    const o = notify['operComplete'];
    const failure = o.cmdFailure
      ? { code: Number(o.cmdFailure.errCode ?? 0), message: String(o.cmdFailure.errMsg ?? '') }
      : undefined;
    return {
      ...base,
      type: 'operationComplete',
      path: String(o.objPath ?? ''),
      name: String(o.commandName ?? ''),
      commandKey: String(o.commandKey ?? ''),
      params: stringsOf(o.reqOutputArgs?.outputArgs),
      ...(failure ? { failure } : {}),
    };
  }
  return null;
}

/** A map from the wire as strings only: what an agent sends is not trusted to be well-typed. */
function stringsOf(map: unknown): Record<string, string> {
  if (!map || typeof map !== 'object') return {};
  return Object.fromEntries(
    Object.entries(map as Record<string, unknown>)
      .slice(0, 200)
      .map(([k, v]) => [k.slice(0, 256), String(v).slice(0, 4096)]),
  );
}

// A bus call answered "no" (a 4xx: not there, wrong credential, not allowed) is an answer; a call
// that failed (a node gone, a timeout, a bug) is a failure the caller must not hide.
export const isRefusal = (err: unknown): boolean => {
  const { code, retryable } = (err ?? {}) as { code?: unknown; retryable?: boolean };
  // Moleculer's "no such service (now)" is a 404 too, but retryable: the callee is away, it said nothing.
  return typeof code === 'number' && code >= 400 && code < 500 && !retryable;
};

/** The answer, or undefined when the callee refused; any other failure is thrown. */
export async function unlessRefused<T>(answer: Promise<T>): Promise<T | undefined> {
  try {
    return await answer;
  } catch (err) {
    if (isRefusal(err)) return undefined;
    throw err;
  }
}

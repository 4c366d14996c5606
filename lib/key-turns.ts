// Work for one key runs one piece after another, in the order it came; different keys run side
// by side. A key's entry goes once its last piece is done.
export class KeyTurns {
  private readonly last = new Map<string, Promise<void>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const result = (this.last.get(key) ?? Promise.resolve()).then(work);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.last.set(key, settled);
    void settled.then(() => {
      if (this.last.get(key) === settled) this.last.delete(key);
    });
    return result;
  }

  /** Resolves once every turn started so far has finished. */
  async settled(): Promise<void> {
    await Promise.all(this.last.values());
  }
}

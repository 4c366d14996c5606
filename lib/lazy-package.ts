// Packages that many boxes never use (a cloud SDK with no target of its kind, the MQTT client
// with no operator, the certificate maker after the first start) load when first needed, not at
// each start: together they cost about 0.7 s and 40 MiB of a start (npm run bench:startup).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A function that loads the package on its first call and then returns it. */
export function lazyPackage<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(name) as T);
}

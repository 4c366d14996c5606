// Fetches to an address a user gave are limited to the sources the installer allowed: a URL
// counts when it lies under one of them (same scheme, host and port, and path prefix), with no
// user name or password in it. So no user can make the box fetch an address of their choosing.
export function underAllowedSource(url: string, sources: readonly string[]): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.username || u.password) return false;
  return sources.some((source) => {
    const s = new URL(source);
    const prefix = s.pathname.endsWith('/') ? s.pathname : `${s.pathname}/`;
    return u.origin === s.origin && (u.pathname === s.pathname || u.pathname.startsWith(prefix));
  });
}

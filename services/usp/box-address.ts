// The box's address on the LAN, for the firmware image URL its cameras fetch. In a balena
// container (bridge network) the container's own address is not reachable from the LAN: the
// device's address comes from balena's supervisor (GET /v1/device, its ip_address list).
import os from 'node:os';

/** The first IPv4 address of this machine that is not loopback. */
export function interfaceAddress(): string {
  for (const addrs of Object.values(os.networkInterfaces()))
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

/** The device's LAN address from balena's supervisor; null when not on balena or it does not answer. */
export async function supervisorAddress(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const supervisor = env['BALENA_SUPERVISOR_ADDRESS'];
  if (!supervisor) return null;
  try {
    const res = await fetch(
      `${supervisor}/v1/device?apikey=${encodeURIComponent(env['BALENA_SUPERVISOR_API_KEY'] ?? '')}`,
      { signal: AbortSignal.timeout(5000) },
    );
    if (!res.ok) return null;
    const device = (await res.json()) as { ip_address?: unknown };
    const first =
      typeof device.ip_address === 'string'
        ? device.ip_address.split(/\s+/).find((ip) => /^\d{1,3}(\.\d{1,3}){3}$/.test(ip))
        : undefined;
    return first ?? null;
  } catch {
    return null;
  }
}

/** The address the cameras reach the box at: balena's idea of it when there is one, else this machine's. */
export async function boxAddress(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return (await supervisorAddress(env)) ?? interfaceAddress();
}

// Home, the operator and "away", as network namespaces on this machine (traffic never leaves it):
//
//   home (this test's own namespace: the box)  10.201.1.2 ──veth── 10.201.1.1 ┐
//                                                            operator (fe-inet): 10.201.0.1,
//                                                            its broker, STUN/TURN, the app's host
//   away (fe-away: the browser)                10.201.2.2 ──veth── 10.201.2.1 ┘
//
// The operator's namespace routes between the two like the internet, through the home router's
// NAT filter: nothing from outside opens a connection to home (the browser cannot reach the box's
// address at all), only answers to what home sent come back, which is what lets ICE punch a
// hole. blockDirect() drops everything between home and away, as a symmetric NAT or a network
// without UDP does: only the operator's TURN relay can carry the session then.
import { execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CHROMIUM } from './browser.ts';
import { tempDir } from './box.ts';

const run = promisify(execFile);

export const INET = 'fe-inet';
export const AWAY = 'fe-away';
const HOME_LINK = 'fe-home';

export class AwayNetwork {
  /** The operator's public address: broker, STUN/TURN, the app's static host. */
  readonly operator = '10.201.0.1';
  readonly home = '10.201.1.2';
  readonly away = '10.201.2.2';

  private constructor(readonly dir: string) {}

  static async create(): Promise<AwayNetwork> {
    await AwayNetwork.remove(); // what a killed run left
    const ip = (...args: string[]) => run('ip', args);
    const inet = (...args: string[]) => run('ip', ['netns', 'exec', INET, ...args]);
    await ip('netns', 'add', INET);
    await ip('netns', 'add', AWAY);
    await ip('link', 'add', HOME_LINK, 'type', 'veth', 'peer', 'name', 'inet-home', 'netns', INET);
    await ip('addr', 'add', '10.201.1.2/24', 'dev', HOME_LINK);
    await ip('link', 'set', HOME_LINK, 'up');
    await ip('route', 'add', '10.201.0.0/24', 'via', '10.201.1.1');
    await ip('route', 'add', '10.201.2.0/24', 'via', '10.201.1.1');
    await ip('-n', INET, 'link', 'add', 'inet-away', 'type', 'veth', 'peer', 'name', 'away0', 'netns', AWAY);
    await ip('-n', INET, 'addr', 'add', '10.201.1.1/24', 'dev', 'inet-home');
    await ip('-n', INET, 'addr', 'add', '10.201.2.1/24', 'dev', 'inet-away');
    await ip('-n', INET, 'addr', 'add', '10.201.0.1/32', 'dev', 'lo');
    for (const link of ['lo', 'inet-home', 'inet-away']) await ip('-n', INET, 'link', 'set', link, 'up');
    await ip('-n', AWAY, 'addr', 'add', '10.201.2.2/24', 'dev', 'away0');
    for (const link of ['lo', 'away0']) await ip('-n', AWAY, 'link', 'set', link, 'up');
    await ip('-n', AWAY, 'route', 'add', 'default', 'via', '10.201.2.1');
    await inet('sysctl', '-qw', 'net.ipv4.ip_forward=1');
    // The home router's NAT filter: what comes from away may only answer what home sent.
    await inet(
      'iptables',
      '-A',
      'FORWARD',
      '-i',
      'inet-away',
      '-o',
      'inet-home',
      '-m',
      'conntrack',
      '--ctstate',
      'NEW',
      '-j',
      'DROP',
    );
    const network = new AwayNetwork(await tempDir('fogedge-away-'));
    return network;
  }

  /** Nothing at all between home and away (each still reaches the operator). */
  async blockDirect(on: boolean): Promise<void> {
    await run('ip', ['netns', 'exec', INET, 'iptables', on ? '-I' : '-D', 'FORWARD', '-j', 'DROP']);
  }

  /**
   * A program in the away namespace, for playwright's executablePath: it keeps the pipe
   * playwright drives Chromium by (ip netns exec passes open files on).
   */
  async chromiumAway(): Promise<string> {
    const script = path.join(this.dir, 'chromium-away.sh');
    await writeFile(script, `#!/bin/sh\nexec ip netns exec ${AWAY} ${CHROMIUM} "$@"\n`);
    await chmod(script, 0o755);
    return script;
  }

  static async remove(): Promise<void> {
    for (const ns of [INET, AWAY]) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    await run('ip', ['link', 'del', HOME_LINK]).catch(() => undefined); // gone with its peer, normally
  }
}

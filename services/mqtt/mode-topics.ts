// The site's mode over MQTT: its id retained on fogedge/mode/state, a switch by an app user who
// publishes a mode's id to fogedge/mode/set (as that user, through the modes service), and the
// mode as a select entity in Home Assistant's discovery.
import type { ServiceBroker } from 'moleculer';
import type { Caller } from '../../lib/actions.ts';
import { topics } from '../../lib/topics.ts';
import type { Config } from '../../appliance/config.ts';
import { version } from '../../appliance/version.ts';
import type { Identity } from './access-rules.ts';
import type { Publish } from './camera-topics.ts';
import { modeSelectConfig } from './home-assistant.ts';

export class ModeTopics {
  private options: string[] = [];

  constructor(
    private readonly config: Config,
    private readonly broker: ServiceBroker,
    private readonly log: ServiceBroker['logger'],
    private readonly publish: Publish,
  ) {}

  /** The mode in force (and the modes there are) as retained messages. */
  async applied(active: string, options: string[]): Promise<void> {
    await this.publish(topics.modeState, active, { retain: true, qos: 1 });
    if (options.join() !== this.options.join()) {
      this.options = options;
      await this.publishDiscovery();
    }
  }

  /** Home Assistant restarted: its select entity again. */
  publishDiscovery(): Promise<void> {
    const prefix = this.config.mqtt?.discoveryPrefix;
    if (!prefix || this.options.length === 0) return Promise.resolve();
    const [topic, config] = modeSelectConfig(prefix, this.options, version);
    return this.publish(topic, config, { retain: true, qos: 1 });
  }

  /** A switch an app user published (the broker's rules let only those who may switch modes). */
  command(payload: Buffer, who: Identity | undefined): void {
    if (who?.kind !== 'user') return;
    const mode = payload.toString().trim();
    const caller: Caller = { username: who.username, role: who.role, via: 'mqtt' };
    this.broker
      .call('modes.set', { mode }, { meta: { caller } })
      .catch((err: Error) =>
        this.log.warn(`MQTT ${topics.modeSet} from "${who.username}": "${mode.slice(0, 40)}" refused: ${err.message}`),
      );
  }
}

// Every service a node can run, by name; SERVICES / `services:` picks which.
import type { ServiceSchema } from 'moleculer';
import type { Config, ServiceName } from '../appliance/config.ts';
import { accountsService } from '../services/accounts/accounts.service.ts';
import { systemService } from '../services/system/system.service.ts';
import { apiService } from './http/api.service.ts';
import { camerasService } from '../services/cameras/cameras.service.ts';
import { streamsService } from '../services/streams/streams.service.ts';
import { recorderService } from '../services/recorder/recorder.service.ts';
import { detectorService } from '../services/detector/detector.service.ts';
import { eventsService } from '../services/events/events.service.ts';
import { devicesService } from '../services/devices/devices.service.ts';
import { mqttService } from '../services/mqtt/mqtt.service.ts';
import { syncService } from '../services/sync/sync.service.ts';
import { admpService } from '../services/admp/admp.service.ts';
import { uspService } from '../services/usp/usp.service.ts';
import { modesService } from '../services/modes/modes.service.ts';
import { automationsService } from '../services/automations/automations.service.ts';
import { webrtcService } from '../services/webrtc/webrtc.service.ts';
import { pushService } from '../services/push/push.service.ts';

export const SERVICE_FACTORIES: Record<ServiceName, (config: Config) => ServiceSchema> = {
  api: apiService,
  accounts: accountsService,
  system: (config: Config): ServiceSchema => systemService(config, (name) => SERVICE_FACTORIES[name](config)),
  cameras: camerasService,
  streams: streamsService,
  recorder: recorderService,
  detector: detectorService,
  events: eventsService,
  devices: devicesService,
  mqtt: mqttService,
  sync: syncService,
  admp: admpService,
  usp: uspService,
  modes: modesService,
  automations: automationsService,
  webrtc: webrtcService,
  push: pushService,
};

// The camera's TR-181 data model, the part firmware management needs:
//   Device.                                   Boot! event
//   Device.DeviceInfo.                        Manufacturer, ModelName, SerialNumber, SoftwareVersion,
//                                             BootFirmwareImage, ActiveFirmwareImage, FirmwareImageNumberOfEntries
//   Device.DeviceInfo.FirmwareImage.{1,2}.    Alias, Name, Version, Status, Available (writable), BootFailureLog;
//                                             Download(), Activate()
//   Device.LocalAgent.                        EndpointID, SoftwareVersion; TransferComplete! event
//   Device.LocalAgent.Request.{i}.            the asynchronous commands under way or done
import { ERR, UspError } from '../../lib/usp/codec.ts';
import { FirmwareError, type FirmwareSlots, type Slot } from '../firmware-slots.ts';
import { DataModel, type ObjectNode } from './data-model.ts';

export interface DeviceInfo {
  manufacturer: string;
  modelName: string;
  serialNumber: string;
}

export interface DeviceModelOptions {
  info: DeviceInfo;
  endpointId: string;
  agentVersion: string;
  slots: FirmwareSlots;
  /** How long a newly activated image has to prove itself healthy, s. */
  trialSeconds: number;
  /** The USP agent's own tables: its async Request.{i} and the controller's Subscription.{i}. */
  agentObjects: () => ObjectNode[];
  /** TransferComplete! to the controller. */
  transferComplete: (params: Record<string, string>) => void;
  /** The camera restarts (Activate() done, Device.Reboot()), after its answer is out. */
  restart: (why: string) => void;
}

const SLOTS: Slot[] = ['A', 'B'];
const instanceOf = (slot: Slot) => SLOTS.indexOf(slot) + 1;

const asUspError = (err: unknown) =>
  err instanceof UspError
    ? err
    : err instanceof FirmwareError
      ? new UspError(err.code, err.message)
      : new UspError(ERR.COMMAND_FAILURE, (err as Error).message);

export function deviceModel(o: DeviceModelOptions): DataModel {
  const { slots } = o;
  const image = (slot: Slot): ObjectNode => {
    const n = instanceOf(slot);
    return {
      path: `Device.DeviceInfo.FirmwareImage.${n}.`,
      params: {
        Alias: { type: 'string', get: () => `cpe-slot-${slot}` },
        Name: { type: 'string', get: () => slot },
        Version: { type: 'string', get: () => slots.slot(slot).version },
        Status: { type: 'string', get: () => slots.slot(slot).status },
        Available: {
          type: 'boolean',
          get: () => String(slots.slot(slot).available),
          set: (value) => {
            if (['false', '0'].includes(value) && slots.active === slot)
              throw new UspError(ERR.INVALID_VALUE, 'The active image cannot be made unavailable');
            // Availability of the inactive image follows its status; nothing else to store.
          },
        },
        BootFailureLog: {
          type: 'string',
          get: () => (slots.state.lastBoot.rolledBack || slots.state.bootFailureLog ? slots.state.bootFailureLog : ''),
        },
      },
      commands: {
        'Download()': {
          async: true,
          input: ['URL', 'AutoActivate', 'Username', 'Password', 'FileSize', 'CheckSumAlgorithm', 'CheckSum'],
          output: [],
          async run(args, commandKey) {
            if (slots.active === slot)
              throw new UspError(
                ERR.COMMAND_FAILURE,
                `FirmwareImage.${n} is the active image: download into the other one`,
              );
            if (!args['URL']) throw new UspError(ERR.INVALID_COMMAND_ARGS, 'Download() needs a URL');
            if (args['CheckSum'] && (args['CheckSumAlgorithm'] ?? 'SHA-256') !== 'SHA-256')
              throw new UspError(ERR.INVALID_COMMAND_ARGS, 'Only SHA-256 checksums are taken');
            const fileSize = args['FileSize'] ? Number(args['FileSize']) : undefined;
            if (fileSize !== undefined && !Number.isSafeInteger(fileSize))
              throw new UspError(ERR.INVALID_COMMAND_ARGS, 'FileSize is a number of bytes');
            const start = new Date().toISOString();
            const told = (fault: UspError | null) =>
              o.transferComplete({
                Command: `Device.DeviceInfo.FirmwareImage.${n}.Download()`,
                CommandKey: commandKey,
                Requestor: '',
                TransferType: 'Download',
                Affected: `Device.DeviceInfo.FirmwareImage.${n}.`,
                TransferURL: args['URL'] ?? '',
                StartTime: start,
                CompleteTime: new Date().toISOString(),
                FaultCode: String(fault?.code ?? 0),
                FaultString: fault?.message ?? '',
              });
            try {
              await slots.download(args['URL'], {
                ...(fileSize !== undefined ? { fileSize } : {}),
                ...(args['CheckSum'] ? { sha256: args['CheckSum'] } : {}),
              });
            } catch (err) {
              const e = asUspError(err);
              told(e);
              throw e;
            }
            told(null);
            if (['true', '1'].includes(args['AutoActivate'] ?? '')) {
              await slots.activate(slot, o.trialSeconds, commandKey);
              setImmediate(() => o.restart('Download() with AutoActivate'));
            }
            return {};
          },
        },
        'Activate()': {
          async: true,
          // A vendor argument (TR-369's X_<vendor>_ naming): how long the new image has to prove
          // itself, as the controller's campaign says; absent, the camera's own setting.
          input: ['X_FOGEDGE_TrialSeconds'],
          output: [],
          async run(args, commandKey) {
            const asked = args['X_FOGEDGE_TrialSeconds'];
            const trialSeconds = asked === undefined ? o.trialSeconds : Number(asked);
            if (!Number.isInteger(trialSeconds) || trialSeconds < 10 || trialSeconds > 86_400)
              throw new UspError(
                ERR.INVALID_COMMAND_ARGS,
                'X_FOGEDGE_TrialSeconds is a whole number of seconds from 10 to 86400',
              );
            try {
              await slots.activate(slot, trialSeconds, commandKey);
            } catch (err) {
              throw asUspError(err);
            }
            // The completion goes out first; then the camera restarts into the new slot.
            setTimeout(() => o.restart('Activate()'), 200);
            return {};
          },
        },
      },
    };
  };

  return new DataModel(() => [
    {
      path: 'Device.',
      params: {},
      events: { 'Boot!': ['CommandKey', 'Cause', 'FirmwareUpdated', 'ParameterMap'] },
      commands: {
        // TR-181 Device.Reboot(): answered first, then the camera restarts; its next Boot! says RemoteReboot.
        'Reboot()': {
          async: false,
          input: [],
          output: [],
          async run(_args, commandKey) {
            await o.slots.noteRemoteReboot(commandKey);
            setTimeout(() => o.restart('Device.Reboot()'), 200);
            return {};
          },
        },
      },
    },
    {
      path: 'Device.DeviceInfo.',
      params: {
        Manufacturer: { type: 'string', get: () => o.info.manufacturer },
        ModelName: { type: 'string', get: () => o.info.modelName },
        SerialNumber: { type: 'string', get: () => o.info.serialNumber },
        SoftwareVersion: { type: 'string', get: () => slots.version },
        // What boots for good: during a new image's trial, the old one it falls back to.
        BootFirmwareImage: {
          type: 'string',
          get: () => `Device.DeviceInfo.FirmwareImage.${instanceOf(slots.state.trying?.from ?? slots.active)}`,
        },
        ActiveFirmwareImage: {
          type: 'string',
          get: () => `Device.DeviceInfo.FirmwareImage.${instanceOf(slots.active)}`,
        },
        FirmwareImageNumberOfEntries: { type: 'unsignedInt', get: () => '2' },
      },
    },
    image('A'),
    image('B'),
    {
      path: 'Device.LocalAgent.',
      params: {
        EndpointID: { type: 'string', get: () => o.endpointId },
        SoftwareVersion: { type: 'string', get: () => o.agentVersion },
      },
      events: {
        'TransferComplete!': [
          'Command',
          'CommandKey',
          'Requestor',
          'TransferType',
          'Affected',
          'TransferURL',
          'StartTime',
          'CompleteTime',
          'FaultCode',
          'FaultString',
        ],
      },
    },
    ...o.agentObjects(),
  ]);
}

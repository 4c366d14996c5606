// usp: the box's USP (TR-369) controller for its camera agents, over the MQTT MTP of the box's
// own broker. An agent announces itself with an MQTTConnect record on fogedge/devices/<id>/usp;
// the controller answers on the topic it subscribed to. The work is in its parts: controller
// (endpoints, requests and answers, notifications), firmware-campaigns, camera-agents (hellos
// and agent commands) and camera-motion; this file wires them and holds the actions.
import { randomBytes } from 'node:crypto';
import type { ServiceSchema } from 'moleculer';
import { z } from 'zod';
import { action } from '../../lib/actions.ts';
import { on } from '../../lib/bus.ts';
import { UnavailableError } from '../../lib/errors.ts';
import { Store } from '../../lib/store.ts';
import type { Config } from '../../appliance/config.ts';
import { dataPaths } from '../../appliance/data-dir.ts';
import { DeviceId } from '../devices/devices.schemas.ts';
import { CameraAgents } from './camera-agents.ts';
import { CameraMotion } from './camera-motion.ts';
import { ACTION_TIMEOUT_MS, apiError, NOTIFICATIONS_KEPT, notRetried, UspController } from './controller.ts';
import { FirmwareCampaigns } from './firmware-campaigns.ts';
import { notificationOf } from './notifications.ts';
import { CampaignInput, ImageFileInput } from './usp.schemas.ts';

export { controllerId } from './controller.ts';

/** A path name as the API takes it (the agent checks it against its data model). */
const UspPath = z
  .string()
  .min(1)
  .max(256)
  .regex(/^Device\./, 'a path that starts with "Device."');
/** The objects of a Set or an Add as USP has them: each with its parameters, all required. */
const objectsOf = (objects: Array<{ path: string; params: Record<string, string> }>) =>
  objects.map((o) => ({
    objPath: o.path,
    paramSettings: Object.entries(o.params).map(([param, value]) => ({ param, value, required: true })),
  }));
const Settings = z
  .record(z.string().min(1).max(128), z.string().max(4096))
  .refine((o) => Object.keys(o).length <= 64, 'at most 64 parameters');

/** The parts, while the service runs. */
interface Running {
  store: Store;
  usp: UspController;
  campaigns: FirmwareCampaigns;
  agents: CameraAgents;
  motion: CameraMotion;
}

export function uspService(config: Config): ServiceSchema {
  let run: Running | undefined;
  const running = () => {
    if (!run) throw new UnavailableError('The USP controller is not started', 'USP_STOPPED');
    return run;
  };

  return {
    name: 'usp',

    actions: {
      endpoints: action({
        input: z.strictObject({}),
        permission: 'devices.manage',
        handler: () => running().usp.endpoints.values(),
      }),

      /** Get on a camera agent's data model: the resolved objects and their parameters. */
      get: action({
        input: z.strictObject({ device: DeviceId, paths: z.array(z.string().min(1).max(256)).min(1).max(64) }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const { usp } = running();
          const reply = await usp
            .ask(await usp.find(ctx.params.device), 'GET', {
              get: { paramPaths: ctx.params.paths },
            })
            .catch((err: unknown) => {
              throw apiError(err);
            });
          return reply.body.response!['getResp'].reqPathResults;
        },
      }),

      /**
       * A firmware campaign: the signed image fetched once and hosted by the box, then each camera
       * updated (Download(), Activate(), the reboot, the new version confirmed) a few at a time;
       * more failures than maxFailures stops it. Answers at once with the campaign; progress on
       * the bus (usp.campaign.changed) and by usp.campaign.
       */
      firmwareUpdate: action({
        input: CampaignInput,
        permission: 'devices.manage',
        handler: (ctx) => running().campaigns.start(ctx.params, ctx.meta.caller?.username ?? 'box'),
      }),

      campaign: action({
        input: z.strictObject({ id: z.string().max(64) }),
        permission: 'devices.manage',
        handler: (ctx) => running().campaigns.get(ctx.params.id),
      }),

      campaigns: action({
        input: z.strictObject({}),
        permission: 'devices.manage',
        handler: () => running().campaigns.latest(),
      }),

      /** Set on an agent's data model: parameters of one or more objects; allowPartial lets each object succeed alone. */
      set: action({
        input: z.strictObject({
          device: DeviceId,
          objects: z
            .array(z.strictObject({ path: UspPath, params: Settings }))
            .min(1)
            .max(32),
          allowPartial: z.boolean().default(false),
        }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const { reply } = await running().usp.askAs(
            ctx,
            p.device,
            'SET',
            { set: { allowPartial: p.allowPartial, updateObjs: objectsOf(p.objects) } },
            p.objects.map((o) => o.path),
          );
          return reply.body.response!['setResp'].updatedObjResults;
        },
      }),

      /** Add: a new instance in a table of the agent (e.g. Device.LocalAgent.Subscription.) with its parameters. */
      add: action({
        input: z.strictObject({
          device: DeviceId,
          objects: z
            .array(z.strictObject({ path: UspPath, params: Settings.default({}) }))
            .min(1)
            .max(32),
          allowPartial: z.boolean().default(false),
        }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const { reply } = await running().usp.askAs(
            ctx,
            p.device,
            'ADD',
            { add: { allowPartial: p.allowPartial, createObjs: objectsOf(p.objects) } },
            p.objects.map((o) => o.path),
          );
          return reply.body.response!['addResp'].createdObjResults;
        },
      }),

      /** Delete: instances of the agent's tables. */
      delete: action({
        input: z.strictObject({
          device: DeviceId,
          paths: z.array(UspPath).min(1).max(32),
          allowPartial: z.boolean().default(false),
        }),
        permission: 'devices.manage',
        timeout: ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const { reply } = await running().usp.askAs(
            ctx,
            p.device,
            'DELETE',
            { delete: { allowPartial: p.allowPartial, objPaths: p.paths } },
            p.paths,
          );
          return reply.body.response!['deleteResp'].deletedObjResults;
        },
      }),

      /**
       * Operate: a command of the agent's data model (Device.Reboot(), ...Download()). A
       * synchronous one answers with its output; an asynchronous one with the Request object it
       * runs as, and, with wait, its OperationComplete (up to waitSeconds).
       */
      operate: action({
        input: z.strictObject({
          device: DeviceId,
          command: z
            .string()
            .min(3)
            .max(256)
            .regex(/^Device\..*\(\)$/, 'a command path that starts with "Device." and ends with "()"'),
          args: Settings.default({}),
          wait: z.boolean().default(false),
          waitSeconds: z.number().int().min(1).max(300).default(60),
        }),
        permission: 'devices.manage',
        // The bus must not give up (or retry) before the wait is over.
        timeout: 310_000 + ACTION_TIMEOUT_MS,
        async handler(ctx) {
          const p = ctx.params;
          const commandKey = `op-${randomBytes(6).toString('hex')}`;
          const { usp } = running();
          const e = await usp.find(p.device);
          const done = p.wait
            ? usp.waitForNotify(
                e.endpointId,
                (n) => n['operComplete']?.commandKey === commandKey,
                p.waitSeconds * 1000,
                `the end of ${p.command}`,
              )
            : undefined;
          done?.catch(() => undefined); // awaited below, once the command is accepted
          const { reply } = await running().usp.askAs(
            ctx,
            p.device,
            'OPERATE',
            { operate: { command: p.command, commandKey, sendResp: true, inputArgs: p.args } },
            [p.command],
          );
          const result = reply.body.response!['operateResp'].operationResults[0] ?? {};
          if (result.cmdFailure)
            return {
              command: p.command,
              commandKey,
              state: 'failed',
              failure: { code: result.cmdFailure.errCode, message: result.cmdFailure.errMsg },
            };
          if (!result.reqObjPath)
            return { command: p.command, commandKey, state: 'done', output: result.reqOutputArgs?.outputArgs ?? {} };
          if (!done) return { command: p.command, commandKey, state: 'running', request: result.reqObjPath };
          const completion = notificationOf(
            e.endpointId,
            e.device,
            await done.catch((err: Error) => {
              throw notRetried(
                new UnavailableError(
                  `${p.command} on ${p.device}: ${err.message}; it may still finish (see its notifications)`,
                  'OPERATION_PENDING',
                ),
              );
            }),
          )!;
          return {
            command: p.command,
            commandKey,
            request: result.reqObjPath,
            ...(completion.failure
              ? { state: 'failed', failure: completion.failure }
              : { state: 'done', output: completion.params }),
          };
        },
      }),

      /** What the agents told the controller (Boot!, OperationComplete, value changes), newest first. */
      notifications: action({
        input: z.strictObject({
          device: DeviceId.optional(),
          limit: z.number().int().min(1).max(NOTIFICATIONS_KEPT).default(100),
        }),
        permission: 'devices.manage',
        handler: (ctx) => running().usp.notificationsOf(ctx.params.device, ctx.params.limit),
      }),

      /** A command to a camera agent (snapshot, restart-stream, set-video, reboot) and its answer. */
      agentCommand: action({
        input: z.strictObject({
          device: DeviceId,
          command: z.enum(['snapshot', 'restart-stream', 'set-video', 'reboot']),
          width: z.number().int().min(160).max(3840).optional(),
          height: z.number().int().min(120).max(2160).optional(),
          bitrateKbps: z.number().int().min(64).max(20_000).optional(),
        }),
        permission: 'devices.manage',
        // Longer than the wait for the agent: the caller gets the action's own 503, not the bus's timeout.
        timeout: ACTION_TIMEOUT_MS,
        handler(ctx) {
          const { device, ...command } = ctx.params;
          return running().agents.command(device, command);
        },
      }),

      /** Internal: the hosted image's file, for the gateway to serve (the token in its name is the capability). */
      imageFile: action({
        input: ImageFileInput,
        handler: (ctx) => running().campaigns.imageFile(ctx.params.file),
      }),
    },

    events: {
      ...on('mqtt.device.disconnected', ({ device }) => run?.usp.markOffline(device, 'its MQTT connection closed')),

      ...on('agent.message', ({ device, channel, payloadBase64, replyTo }) => {
        if (!run) return;
        if (channel === 'usp') return run.usp.receive(device, payloadBase64, replyTo);
        if (channel === 'agent/hello') return run.agents.hello(device, payloadBase64);
        if (channel === 'agent/reply') return run.agents.replied(device, payloadBase64);
        if (channel === 'agent/motion') return run.motion.receive(device, Buffer.from(payloadBase64, 'base64'));
      }),
    },

    async started() {
      const store = await Store.open(dataPaths(config).db('usp'));
      const usp = new UspController(config, store, this.broker, this.logger);
      const campaigns = new FirmwareCampaigns(config, store, usp, this.broker);
      await campaigns.recover();
      const agents = new CameraAgents(config, usp.self, this.broker, this.logger);
      run = { store, usp, campaigns, agents, motion: new CameraMotion(this.broker, this.logger) };
    },

    async stopped() {
      if (!run) return;
      const { usp, store } = run;
      run = undefined;
      usp.stop();
      await store.close();
    },
  };
}

// A USP agent's data model: objects (single or multi-instance) with parameters, commands and
// events, and the Get / Set / Operate / GetSupportedDM semantics of TR-369 over it, with the
// spec's error codes. Path names: "Device.DeviceInfo.", "Device.DeviceInfo.SoftwareVersion",
// "Device.DeviceInfo.FirmwareImage.*.Status", "Device.DeviceInfo.FirmwareImage.2.Download()".
// Search expressions ([Status=="Active"]) and references are not supported (7008).
import { ERR, UspError } from '../../lib/usp/codec.ts';

export type ParamType = 'string' | 'boolean' | 'unsignedInt' | 'dateTime';

export interface Param {
  type: ParamType;
  get(): string;
  /** Absent: read-only. Throws a UspError (7012) for a value it does not take. */
  set?(value: string): void | Promise<void>;
}

export interface Command {
  async: boolean;
  input: string[];
  output: string[];
  /** Resolves with the output arguments; rejects with a UspError for a command failure. */
  run(args: Record<string, string>, commandKey: string): Promise<Record<string, string>>;
}

export interface ObjectNode {
  /** Concrete: "Device.DeviceInfo.FirmwareImage.1." */
  path: string;
  params: Record<string, Param>;
  commands?: Record<string, Command>;
  /** Event name ("Boot!") and its argument names. */
  events?: Record<string, string[]>;
}

/** A concrete path in its supported form: instance numbers become {i}. */
export const supportedForm = (path: string) => path.replace(/\.(\d+|\*)(?=\.)/g, '.{i}');

const SEGMENT = /^([A-Za-z][A-Za-z0-9_-]*|\d+|\*)$/;
const LEAF = /^[A-Za-z][A-Za-z0-9_-]*(\(\)|!)?$/;

/** Splits a path into object segments and an optional leaf (parameter, command or event). */
function parse(path: string): { objects: string[]; leaf: string | null } {
  if (!path.startsWith('Device.') || /\s|\.\./.test(path))
    throw new UspError(ERR.INVALID_PATH_SYNTAX, `"${path}" is not a path name this agent understands`);
  const parts = path.split('.');
  const leaf = parts.pop()!;
  if (!parts.every((p) => SEGMENT.test(p)) || (leaf !== '' && !LEAF.test(leaf)))
    throw new UspError(
      ERR.INVALID_PATH_SYNTAX,
      `"${path}" is not a path name this agent understands (search expressions are not supported)`,
    );
  return { objects: parts, leaf: leaf === '' ? null : leaf };
}

const segmentsOf = (objectPath: string) => objectPath.split('.').slice(0, -1);
const segmentMatches = (pattern: string, actual: string) =>
  pattern === actual || (pattern === '*' && /^\d+$/.test(actual));
const matchesExactly = (pattern: string[], actual: string[]) =>
  pattern.length === actual.length && pattern.every((p, i) => segmentMatches(p, actual[i]!));
const matchesPrefix = (pattern: string[], actual: string[]) =>
  pattern.length <= actual.length && pattern.every((p, i) => segmentMatches(p, actual[i]!));
const supportedSegments = (pattern: string[]) =>
  pattern.map((p, i) => (i > 0 && (p === '*' || /^\d+$/.test(p)) ? '{i}' : p));

export class DataModel {
  /** `objects` is asked on every request, so instances are always the current ones. */
  constructor(private readonly objects: () => ObjectNode[]) {}

  private supportedPaths(): string[] {
    return [...new Set(this.objects().map((o) => supportedForm(o.path)))];
  }

  private isSupportedPrefix(pattern: string[]): boolean {
    const wanted = supportedSegments(pattern).join('.');
    return this.supportedPaths().some((s) => `${s}`.startsWith(`${wanted}.`));
  }

  get(paths: string[]): Array<{
    requestedPath: string;
    errCode: number;
    errMsg: string;
    resolvedPathResults: Array<{ resolvedPath: string; resultParams: Record<string, string> }>;
  }> {
    return paths.map((requestedPath) => {
      try {
        const { objects, leaf } = parse(requestedPath);
        if (leaf && (leaf.endsWith('()') || leaf.endsWith('!')))
          throw new UspError(ERR.INVALID_PATH, `"${requestedPath}" is a command or event, not a parameter`);
        if (!this.isSupportedPrefix(objects))
          throw new UspError(ERR.INVALID_PATH, `"${requestedPath}" is not in this agent's data model`);
        const all = this.objects();
        if (leaf === null) {
          const hit = all.filter((o) => matchesPrefix(objects, segmentsOf(o.path)));
          return {
            requestedPath,
            errCode: 0,
            errMsg: '',
            resolvedPathResults: hit.map((o) => ({
              resolvedPath: o.path,
              resultParams: Object.fromEntries(Object.entries(o.params).map(([n, p]) => [n, p.get()])),
            })),
          };
        }
        const supported = all.some(
          (o) =>
            matchesPrefix(supportedSegments(objects), segmentsOf(supportedForm(o.path))) &&
            supportedSegments(objects).length === segmentsOf(o.path).length &&
            leaf in o.params,
        );
        if (!supported)
          throw new UspError(ERR.INVALID_PATH, `"${requestedPath}" is not a parameter of this agent's data model`);
        const hit = all.filter((o) => matchesExactly(objects, segmentsOf(o.path)) && leaf in o.params);
        return {
          requestedPath,
          errCode: 0,
          errMsg: '',
          resolvedPathResults: hit.map((o) => ({
            resolvedPath: o.path,
            resultParams: { [leaf]: o.params[leaf]!.get() },
          })),
        };
      } catch (err) {
        if (!(err instanceof UspError)) throw err;
        return { requestedPath, errCode: err.code, errMsg: err.message, resolvedPathResults: [] };
      }
    });
  }

  /** Set: all or nothing unless allowPartial; refusals carry each parameter's own error. */
  async set(
    updateObjs: Array<{ objPath: string; paramSettings: Array<{ param: string; value: string; required?: boolean }> }>,
    allowPartial: boolean,
  ) {
    type Result = { requestedPath: string; operStatus: Record<string, unknown> };
    const planned: Array<{ object: ObjectNode; settings: Array<{ param: string; value: string }> }> = [];
    const results: Result[] = [];
    for (const u of updateObjs) {
      const { objects, leaf } = parse(u.objPath);
      if (leaf !== null)
        throw new UspError(ERR.INVALID_PATH_SYNTAX, `Set takes object paths ending in ".", not "${u.objPath}"`);
      if (!this.isSupportedPrefix(objects))
        throw new UspError(ERR.INVALID_PATH, `"${u.objPath}" is not in this agent's data model`);
      const hit = this.objects().filter((o) => matchesExactly(objects, segmentsOf(o.path)));
      const failure = (
        code: number,
        msg: string,
        paramErrs: Array<{ param: string; errCode: number; errMsg: string }> = [],
      ) => {
        if (!allowPartial)
          throw new UspError(
            code,
            msg,
            paramErrs.map((e) => ({ paramPath: `${u.objPath}${e.param}`, errCode: e.errCode, errMsg: e.errMsg })),
          );
        results.push({ requestedPath: u.objPath, operStatus: { operFailure: { errCode: code, errMsg: msg } } });
      };
      if (!hit.length) {
        failure(ERR.OBJECT_DOES_NOT_EXIST, `No instance matches "${u.objPath}"`);
        continue;
      }
      const paramErrs: Array<{ param: string; errCode: number; errMsg: string }> = [];
      for (const object of hit) {
        for (const s of u.paramSettings) {
          const p = object.params[s.param];
          if (!p)
            paramErrs.push({
              param: s.param,
              errCode: ERR.UNSUPPORTED_PARAM,
              errMsg: `${object.path} has no parameter ${s.param}`,
            });
          else if (!p.set)
            paramErrs.push({
              param: s.param,
              errCode: ERR.NOT_WRITABLE,
              errMsg: `${object.path}${s.param} is read-only`,
            });
          else if (p.type === 'boolean' && !['true', 'false', '1', '0'].includes(s.value))
            paramErrs.push({ param: s.param, errCode: ERR.INVALID_TYPE, errMsg: `${s.param} takes true or false` });
        }
        planned.push({ object, settings: u.paramSettings });
      }
      if (paramErrs.length) {
        planned.splice(planned.length - hit.length, hit.length);
        failure(
          paramErrs[0]!.errCode,
          `Set of ${u.objPath} failed: ${paramErrs.map((e) => e.errMsg).join('; ')}`,
          paramErrs,
        );
      }
    }
    // Everything checked: now written.
    for (const { object, settings } of planned) {
      for (const s of settings) await object.params[s.param]!.set!(s.value);
      results.push({
        requestedPath: object.path,
        operStatus: {
          operSuccess: {
            updatedInstResults: [
              {
                affectedPath: object.path,
                updatedParams: Object.fromEntries(settings.map((s) => [s.param, object.params[s.param]!.get()])),
              },
            ],
          },
        },
      });
    }
    return { updatedObjResults: results };
  }

  /** The command's object and definition, or the spec's error; arguments are checked here too. */
  command(path: string, inputArgs: Record<string, string>): { object: ObjectNode; name: string; command: Command } {
    const { objects, leaf } = parse(path);
    if (!leaf?.endsWith('()')) throw new UspError(ERR.INVALID_PATH_SYNTAX, `"${path}" is not a command path (Name())`);
    const object = this.objects().find((o) => matchesExactly(objects, segmentsOf(o.path)) && o.commands?.[leaf]);
    if (!object) throw new UspError(ERR.INVALID_PATH, `"${path}" is not a command of this agent`);
    const command = object.commands![leaf]!;
    const unknown = Object.keys(inputArgs).filter((a) => !command.input.includes(a));
    if (unknown.length)
      throw new UspError(
        ERR.INVALID_COMMAND_ARGS,
        `${leaf} does not take ${unknown.join(', ')} (it takes ${command.input.join(', ')})`,
      );
    return { object, name: leaf, command };
  }

  supportedDM(
    objPaths: string[],
    firstLevelOnly: boolean,
    want: { commands: boolean; events: boolean; params: boolean },
  ) {
    const all = this.objects();
    return objPaths.map((reqObjPath) => {
      try {
        const { objects, leaf } = parse(reqObjPath);
        if (leaf !== null)
          throw new UspError(
            ERR.INVALID_PATH_SYNTAX,
            `GetSupportedDM takes object paths ending in ".", not "${reqObjPath}"`,
          );
        const base = supportedSegments(objects);
        if (!this.isSupportedPrefix(objects))
          throw new UspError(ERR.INVALID_PATH, `"${reqObjPath}" is not in this agent's data model`);
        const bySupported = new Map<string, ObjectNode>();
        for (const o of all) {
          const s = supportedForm(o.path);
          const depth = segmentsOf(s).length - base.length;
          if (matchesPrefix(base, segmentsOf(s)) && (!firstLevelOnly || depth <= 1) && !bySupported.has(s))
            bySupported.set(s, o);
        }
        return {
          reqObjPath,
          errCode: 0,
          errMsg: '',
          dataModelInstUri: 'urn:broadband-forum-org:tr-181-2-16-0',
          supportedObjs: [...bySupported].map(([s, o]) => ({
            supportedObjPath: s,
            access: 'OBJ_READ_ONLY',
            isMultiInstance: s.endsWith('{i}.'),
            supportedParams: want.params
              ? Object.entries(o.params).map(([paramName, p]) => ({
                  paramName,
                  access: p.set ? 'PARAM_READ_WRITE' : 'PARAM_READ_ONLY',
                  valueType: {
                    string: 'PARAM_STRING',
                    boolean: 'PARAM_BOOLEAN',
                    unsignedInt: 'PARAM_UNSIGNED_INT',
                    dateTime: 'PARAM_DATE_TIME',
                  }[p.type],
                  valueChange: 'VALUE_CHANGE_ALLOWED',
                }))
              : [],
            supportedCommands: want.commands
              ? Object.entries(o.commands ?? {}).map(([commandName, c]) => ({
                  commandName,
                  inputArgNames: c.input,
                  outputArgNames: c.output,
                  commandType: c.async ? 'CMD_ASYNC' : 'CMD_SYNC',
                }))
              : [],
            supportedEvents: want.events
              ? Object.entries(o.events ?? {}).map(([eventName, argNames]) => ({ eventName, argNames }))
              : [],
          })),
        };
      } catch (err) {
        if (!(err instanceof UspError)) throw err;
        return { reqObjPath, errCode: err.code, errMsg: err.message, dataModelInstUri: '', supportedObjs: [] };
      }
    });
  }
}

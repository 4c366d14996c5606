// Small pieces every page uses: loading data, a form field with its error, a permission guard.
import type { ComponentChildren, TargetedEvent } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, can } from '../api.ts';
import type { Permission } from '../../../lib/permissions.ts';

/** Loads once and on reload(); keeps the last data while reloading so nothing flickers. */
export function useLoad<T>(
  load: () => Promise<T>,
  deps: unknown[] = [],
): { data: T | undefined; error: Error | undefined; reload: () => Promise<void> } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<Error>();
  const reload = useCallback(async () => {
    try {
      setData(await load());
      setError(undefined);
    } catch (err) {
      setError(err as Error);
    }
  }, deps);
  useEffect(() => void reload(), [reload]);
  return { data, error, reload };
}

/** Sends a change to the box: its error stays for the page to show; `after` (a reload) runs once it worked. */
export function useAction(after?: () => Promise<void>): {
  error: Error | undefined;
  run: (change: () => Promise<unknown>) => Promise<boolean>;
} {
  const [error, setError] = useState<Error>();
  const run = async (change: () => Promise<unknown>) => {
    try {
      await change();
      setError(undefined);
      await after?.();
      return true;
    } catch (err) {
      setError(err as Error);
      return false;
    }
  };
  return { error, run };
}

/** An error for the page; with `besideFields`, one whose fields are named is left to those fields. */
export function Problem({ error, besideFields }: { error: Error | undefined | null; besideFields?: boolean }) {
  if (!error || (besideFields && error instanceof ApiError && error.fields.length > 0)) return null;
  return (
    <p class="problem" role="alert">
      {error.message}
    </p>
  );
}

export function Field(props: {
  label: string;
  name: string;
  error?: ApiError | Error | undefined;
  hint?: string;
  children: ComponentChildren;
}) {
  const message = props.error instanceof ApiError ? props.error.field(props.name) : undefined;
  return (
    <label class={message ? 'field invalid' : 'field'} data-field={props.name}>
      <span>{props.label}</span>
      {props.children}
      {message ? (
        <small class="field-error" role="alert">
          {message}
        </small>
      ) : props.hint ? (
        <small>{props.hint}</small>
      ) : null}
    </label>
  );
}

/** A page only for roles with the permission; the API refuses anyway, this says so plainly. */
export function Guard({ permission, children }: { permission: Permission; children: ComponentChildren }) {
  if (!can(permission)) {
    return (
      <section class="page">
        <h1>Not for your account</h1>
        <p class="problem" role="alert">
          Your account cannot open this page. Ask the box's admin if you need it.
        </p>
      </section>
    );
  }
  return <>{children}</>;
}

export function Page({
  title,
  actions,
  children,
}: {
  title: string;
  actions?: ComponentChildren;
  children: ComponentChildren;
}) {
  return (
    <section class="page">
      <div class="page-head">
        <h1>{title}</h1>
        {actions}
      </div>
      {children}
    </section>
  );
}

/** A form's values as an object, numbers as numbers. */
export function formValues(e: TargetedEvent<HTMLFormElement>): Record<string, string> {
  e.preventDefault();
  return Object.fromEntries(new FormData(e.currentTarget)) as Record<string, string>;
}

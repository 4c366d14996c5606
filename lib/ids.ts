// The short ids users choose for cameras and cloud targets: written once, used in schemas, file
// names (clips) and paths (live view).
import { z } from 'zod';

/** 1-32 characters: lower-case letters, digits and dashes, not starting with a dash. */
export const SLUG = '[a-z0-9][a-z0-9-]{0,31}';

export const slugId = (what: string) =>
  z
    .string()
    .regex(new RegExp(`^${SLUG}$`), '1-32 characters: lower-case letters, digits, dash')
    .describe(what);

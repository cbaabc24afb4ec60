/**
 * When capture last reached the source and caught up with it, kept beside a gateway's segments as
 * `.source-contact.json` (a dot file, like the run lock: `LIST` of the volume shows segments only) for
 * `tributary status`.
 *
 * The manifests alone cannot say how fresh staging is: on an idle source no segment is sealed, so the newest
 * manifest ages while nothing is missing, and when the source cannot be reached they cannot tell an idle
 * source from a dead connection. This record says: at `at`, the source's log ended at or before `head`, and
 * every change of the captured tables up to `head` is sealed in staging. Each catch-up round that completes
 * rewrites it. Nothing reads it to recover; positions live only in the manifests.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Position } from '../core/position.js';

export const SOURCE_CONTACT_FILE = '.source-contact.json';

export interface SourceContact {
  /** ISO time taken just before `head` was read: every change the source committed before it is at or before `head`. */
  readonly at: string;
  /** The source's head position, as its `readHead` gave it. */
  readonly head: Position;
}

/** Replaces the record atomically (a reader sees the old one or the new one, never half of either). */
export async function recordSourceContact(gatewayDir: string, contact: SourceContact): Promise<void> {
  const path = join(gatewayDir, SOURCE_CONTACT_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(contact)}\n`);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

/** The record, or undefined when no round has completed since it was introduced (or it is unreadable). */
export async function readSourceContact(gatewayDir: string): Promise<SourceContact | undefined> {
  try {
    const value = JSON.parse(await readFile(join(gatewayDir, SOURCE_CONTACT_FILE), 'utf8')) as unknown;
    const c = value as Partial<SourceContact>;
    if (typeof c.at !== 'string' || typeof c.head !== 'string' || Number.isNaN(Date.parse(c.at)))
      return undefined;
    return { at: c.at, head: c.head as Position };
  } catch {
    return undefined;
  }
}

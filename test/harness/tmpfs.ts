/**
 * Small tmpfs mounts for tests of a REAL full disk: writes on them fail with ENOSPC from the kernel, not
 * from a mock. Mounting needs root on Linux; {@link cannotMount} says why it cannot be done here, so a test
 * can skip with that reason in its output.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rmdir, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function mount(dir: string, size: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
}

export function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    // Busy (a child still holding a file): detach it now, the kernel frees it when the last user goes.
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
}

/** Why tmpfs tests cannot run here, or undefined when a tmpfs can be mounted. */
export async function cannotMount(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `tmpfs mounts need Linux, this is ${process.platform}`;
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  const probe = await mkdtemp(join(tmpdir(), 'tributary-tmpfs-probe-'));
  try {
    mount(probe, '1m');
    unmount(probe);
    return undefined;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return `mount -t tmpfs failed: ${stderr || (error as Error).message}`;
  } finally {
    await rmdir(probe).catch(() => undefined);
  }
}

export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * Fills the file system of `dir` until about `leave` bytes are free; returns the filler's path. Written in
 * chunks that stop at ENOSPC, because other writers may take some of the room while it fills.
 */
export async function fill(dir: string, leave: number): Promise<string> {
  const path = join(dir, 'filler.bin');
  let remaining = Math.max(0, (await freeBytes(dir)) - leave);
  const handle = await open(path, 'w');
  try {
    let chunk = 1 << 20;
    while (remaining > 0 && chunk >= 4096) {
      const size = Math.min(chunk, remaining);
      try {
        await handle.write(Buffer.alloc(size));
        remaining -= size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
        chunk >>= 1;
      }
    }
  } finally {
    await handle.close();
  }
  return path;
}

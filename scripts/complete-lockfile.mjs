#!/usr/bin/env node
// Run after `npm install` changes package-lock.json.
//
// Why: the npm registry these machines reach serves only some platforms' builds of packages that ship one
// optional package per platform (Biome's CLI, DuckDB's bindings). npm then leaves the other platforms out
// of package-lock.json, and `npm ci` refuses the lockfile as "out of sync". This adds the missing entries
// with their os/cpu/libc, which is exactly what npm itself records: on a machine of another platform npm
// installs them from the registry, and here it skips them as it skips any optional package for another
// platform.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const path = join(dirname(fileURLToPath(import.meta.url)), '..', 'package-lock.json');
const lock = JSON.parse(readFileSync(path, 'utf8'));
const packages = lock.packages;
const added = [];
for (const [key, meta] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const entry = `node_modules/${name}`;
    if (packages[entry]) continue;
    // Platform packages are named <prefix>-<os>-<cpu>[-musl].
    const m =
      /-(android|darwin|linux|win32|freebsd|openbsd|sunos|aix)-(x64|arm64|arm|ia32|ppc64|s390x|riscv64)(-musl|-gnu)?$/.exec(
        name,
      );
    if (!m) continue;
    const record = { version, cpu: [m[2]] };
    if (meta.dev) record.dev = true;
    record.optional = true;
    record.os = [m[1]];
    if (m[1] === 'linux') record.libc = [m[3] === '-musl' ? 'musl' : 'glibc'];
    packages[entry] = record;
    added.push(`${entry} (optional dependency of ${key.replace('node_modules/', '')})`);
  }
}
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
process.stdout.write(
  added.length ? `added:\n  ${added.join('\n  ')}\n` : 'package-lock.json already complete\n',
);

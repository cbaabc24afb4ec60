/**
 * The dependency arrows of docs/architecture.md ("Module map"), checked on every import of every non-test
 * module under src/. Type-only imports count too: a type import is still knowledge of the other module.
 *
 * Imports are read with TypeScript's own pre-processor rather than a regular expression, so multi-line,
 * `export ... from`, side-effect and dynamic `import()` forms are all seen.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = join(ROOT, 'src');

interface Edge {
  /** Importing file, relative to the repository root with forward slashes: `src/pipeline/apply.ts`. */
  readonly from: string;
  /** The specifier as written. */
  readonly specifier: string;
  /** For relative imports, the imported file relative to the repository root; null for packages. */
  readonly to: string | null;
}

const posix = (path: string) => path.split(sep).join('/');

function sourceFiles(): string[] {
  return readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'))
    .map((f) => posix(join('src', f)))
    .sort();
}

function edgesOf(file: string): Edge[] {
  const info = ts.preProcessFile(readFileSync(join(ROOT, file), 'utf8'), true, true);
  return info.importedFiles.map(({ fileName: specifier }) => {
    if (!specifier.startsWith('.')) return { from: file, specifier, to: null };
    // NodeNext: sources name the emitted `.js`; the file on disk is the `.ts` beside it.
    const target = resolve(ROOT, dirname(file), specifier).replace(/\.js$/, '.ts');
    return { from: file, specifier, to: posix(relative(ROOT, target)) };
  });
}

const FILES = sourceFiles();
const EDGES = FILES.flatMap(edgesOf);

/**
 * The unit an arrow is drawn between: the folder under src/, except that each source adapter is its own unit
 * (`sources/mysql`), because adapters must not know one another either.
 */
function unitOf(path: string): string {
  const parts = path.split('/');
  if (parts[0] !== 'src') return '<outside src>';
  if (parts.length === 2) return '<src root>';
  return parts[1] === 'sources' && parts.length > 3 ? `sources/${parts[2]}` : (parts[1] as string);
}

const isSource = (unit: string) => unit.startsWith('sources/');

interface Rule {
  readonly name: string;
  /** True when an import from unit `from` to unit `to` (null: a package) breaks the rule. */
  readonly breaks: (from: string, to: string | null) => boolean;
}

const RULES: readonly Rule[] = [
  {
    // The change model and the ports are what every side agrees on; they must not drag anything in, not even
    // node: built-ins, so that any runtime or tool can load them.
    name: 'src/core imports only src/core',
    breaks: (from, to) => from === 'core' && to !== 'core',
  },
  {
    name: 'src/pipeline does not import source adapters, src/app, src/cli, src/demo or src/testing',
    breaks: (from, to) =>
      from === 'pipeline' && to !== null && (isSource(to) || ['app', 'cli', 'demo', 'testing'].includes(to)),
  },
  {
    // An adapter implements the ports of core and is handed its settings by src/app; everything else it might
    // reach for (staging, Delta, config, another adapter) would couple capture to one source.
    name: 'a source adapter (src/sources/*) imports only src/core and itself',
    breaks: (from, to) => isSource(from) && to !== null && to !== 'core' && to !== from,
  },
  {
    name: 'src/delta imports only src/core and itself (plus packages)',
    breaks: (from, to) => from === 'delta' && to !== null && to !== 'core' && to !== 'delta',
  },
  {
    name: 'src/staging imports only src/core, src/engine and itself',
    breaks: (from, to) => from === 'staging' && to !== null && !['core', 'engine', 'staging'].includes(to),
  },
  {
    // The engine is the DuckDB layer everything above builds on: it knows Delta and nothing of staging.
    name: 'src/engine imports only src/core, src/delta, src/catalog and itself',
    breaks: (from, to) =>
      from === 'engine' && to !== null && !['core', 'delta', 'catalog', 'engine'].includes(to),
  },
  {
    // Bronze writing joins the staging format to the Delta log; it must not know who captured the changes.
    name: 'src/bronze imports only src/core, src/delta, src/engine, src/staging and itself',
    breaks: (from, to) =>
      from === 'bronze' && to !== null && !['core', 'delta', 'engine', 'staging', 'bronze'].includes(to),
  },
  {
    name: 'src/catalog and src/secrets import only src/core and themselves',
    breaks: (from, to) =>
      (from === 'catalog' || from === 'secrets') && to !== null && to !== 'core' && to !== from,
  },
  {
    // The composition root chooses the concrete source; everything below it sees only the ports.
    name: 'only src/app, src/cli, src/demo and src/testing import a source adapter (adapters only themselves)',
    breaks: (from, to) =>
      to !== null && isSource(to) && from !== to && !['app', 'cli', 'demo', 'testing'].includes(from),
  },
  {
    name: 'only src/cli imports src/app',
    breaks: (from, to) => to === 'app' && from !== 'app' && from !== 'cli',
  },
  {
    name: 'nothing outside src/cli imports src/cli',
    breaks: (from, to) => to === 'cli' && from !== 'cli',
  },
  {
    // Throwaway servers and program installers must never become a runtime dependency of the product.
    name: 'only src/demo and src/testing import src/testing',
    breaks: (from, to) => to === 'testing' && from !== 'testing' && from !== 'demo',
  },
  {
    name: 'src/ does not import files outside src/ by relative path',
    breaks: (_from, to) => to === '<outside src>',
  },
];

function violations(edges: readonly Edge[], rule: Rule): Edge[] {
  return edges.filter((e) => rule.breaks(unitOf(e.from), e.to === null ? null : unitOf(e.to)));
}

function describeEdge(e: Edge): string {
  return `${e.from} imports '${e.specifier}'${e.to ? ` (${e.to})` : ''}`;
}

/** Every simple cycle found by depth-first search, each as `a -> b -> a`. */
function cyclesOf(edges: ReadonlyArray<readonly [string, string]>): string[] {
  const graph = new Map<string, string[]>();
  for (const [from, to] of edges) if (from !== to) graph.set(from, [...(graph.get(from) ?? []), to]);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].join(' -> '));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return cycles;
}

const fileCycles = () => cyclesOf(EDGES.flatMap((e) => (e.to === null ? [] : [[e.from, e.to] as const])));
const folderCycles = () =>
  cyclesOf(EDGES.flatMap((e) => (e.to === null ? [] : [[unitOf(e.from), unitOf(e.to)] as const])));

describe('architecture: import arrows', () => {
  it('sees the code it checks', () => {
    // Guards against a vacuous pass: a broken file walk or parser would find no imports at all.
    expect(FILES).toContain('src/app/run-pipeline.ts');
    expect(
      EDGES.some((e) => e.from.startsWith('src/app/') && e.to?.startsWith('src/sources/mysql/')),
      'src/app should import the MySQL source adapter',
    ).toBe(true);
  });

  it('catches wrong arrows', () => {
    const wrong: Edge[] = [
      { from: 'src/core/x.ts', specifier: 'node:fs', to: null },
      { from: 'src/pipeline/x.ts', specifier: '../sources/mysql/y.js', to: 'src/sources/mysql/y.ts' },
      { from: 'src/sources/mysql/x.ts', specifier: '../postgres/y.js', to: 'src/sources/postgres/y.ts' },
      { from: 'src/delta/x.ts', specifier: '../engine/y.js', to: 'src/engine/y.ts' },
    ];
    const caught = new Set(RULES.flatMap((rule) => violations(wrong, rule)));
    expect([...caught]).toHaveLength(wrong.length);
  });

  for (const rule of RULES) {
    it(rule.name, () => {
      const offending = violations(EDGES, rule);
      expect(
        offending.map(describeEdge),
        `"${rule.name}" is broken by:\n  ${offending.map(describeEdge).join('\n  ')}\n`,
      ).toEqual([]);
    });
  }

  it('has no import cycles between files', () => {
    // ES modules in a cycle see each other half-initialised; the symptom is a TDZ error far from the cause.
    const cycles = fileCycles();
    expect(cycles, `import cycles:\n  ${cycles.join('\n  ')}\n`).toEqual([]);
  });

  it('has no import cycles between folders', () => {
    // Folders are the layers of docs/architecture.md; a cycle means two of them are really one.
    const cycles = folderCycles();
    expect(cycles, `folder cycles:\n  ${cycles.join('\n  ')}\n`).toEqual([]);
  });
});

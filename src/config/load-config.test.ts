import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTributaryError, type TributaryError } from '../core/errors.js';
import { SecretStore } from '../secrets/secret-store.js';
import { formatPath, loadConfig, parseConfig, resolveConnectionPassword } from './load-config.js';

const CONFIG_PATH = '/srv/tributary/tributary.yaml';
const SECRET_VALUE = 'hunter2-PLAINTEXT-s3cret';
// Names as variables: tsc wants index-signature access in brackets, and Biome wants literal keys dotted.
const CONNECTION = 'retail_mysql_connection';
const GATEWAY = 'retail_ingestion_gateway';
const PIPELINE = 'retail_ingestion_pipeline';

const EXAMPLE = `warehouse: ./lakehouse
connections:
  retail_mysql_connection:
    type: mysql
    host: 127.0.0.1
    port: 3306
    user: cdc_user
    password: "{{secrets/mysql_credentials/cdc_password}}"
gateways:
  retail_ingestion_gateway:
    connection: retail_mysql_connection
    storage: retail_analytics.landing.ingestion_volume
    server_id: 5401
pipelines:
  retail_ingestion_pipeline:
    gateway: retail_ingestion_gateway
    objects:
      - table:
          source_schema: retail_db
          source_table: customers
          destination_catalog: retail_analytics
          destination_schema: bronze
          destination_table: customers
          table_configuration: { scd_type: SCD_TYPE_1 }
      - schema:
          source_schema: retail_db
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_1 }
`;

function edit(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`test fixture does not contain ${JSON.stringify(from)}`);
  return text.replace(from, to);
}

function parseError(text: string, path = CONFIG_PATH): TributaryError {
  try {
    parseConfig(text, path);
  } catch (error) {
    if (isTributaryError(error)) return error;
    throw error;
  }
  throw new Error('expected parseConfig to throw');
}

/** The problem lines of a CONFIG_INVALID message (everything after the first line), without line numbers. */
function problems(error: TributaryError): string[] {
  return error.message
    .split('\n')
    .slice(1)
    .map((l) => l.trim().replace(/ \(line \d+\)$/, ''));
}

describe('parseConfig', () => {
  it('parses the documented example, applying defaults and resolving the warehouse', () => {
    const config = parseConfig(EXAMPLE, CONFIG_PATH);
    expect(config.configPath).toBe(CONFIG_PATH);
    expect(config.warehouse).toBe('/srv/tributary/lakehouse');
    expect(config.connections[CONNECTION]).toEqual({
      name: 'retail_mysql_connection',
      type: 'mysql',
      host: '127.0.0.1',
      port: 3306,
      user: 'cdc_user',
      password: '{{secrets/mysql_credentials/cdc_password}}',
      retention_policy: { max_downtime_hours: 12, max_pipeline_duration_hours: 1, buffer_hours: 11 },
    });
    expect(config.gateways[GATEWAY]).toEqual({
      name: 'retail_ingestion_gateway',
      connection: 'retail_mysql_connection',
      storage: 'retail_analytics.landing.ingestion_volume',
      server_id: 5401,
      staging_retention_days: 25,
      snapshot_parallel_tables: 2,
    });
    expect(config.pipelines[PIPELINE]).toEqual({
      name: 'retail_ingestion_pipeline',
      gateway: 'retail_ingestion_gateway',
      schema_evolution: 'evolve',
      auto_full_refresh: false,
      schedule: 'continuous',
      objects: [
        {
          table: {
            source_schema: 'retail_db',
            source_table: 'customers',
            destination_catalog: 'retail_analytics',
            destination_schema: 'bronze',
            destination_table: 'customers',
            table_configuration: { scd_type: 'SCD_TYPE_1' },
          },
        },
        {
          schema: {
            source_schema: 'retail_db',
            destination_catalog: 'retail_analytics',
            destination_schema: 'bronze',
            table_configuration: { scd_type: 'SCD_TYPE_1' },
          },
        },
      ],
    });
  });

  it('defaults port, server_id, destination_table and table_configuration', () => {
    let text = edit(EXAMPLE, '    port: 3306\n', '');
    text = edit(text, '    server_id: 5401\n', '');
    text = edit(text, '          destination_table: customers\n', '');
    text = text.replaceAll('          table_configuration: { scd_type: SCD_TYPE_1 }\n', '');
    text = edit(text, 'source_table: customers', 'source_table: orders');
    const config = parseConfig(text, CONFIG_PATH);
    expect(config.connections[CONNECTION]?.port).toBe(3306);
    expect(config.gateways[GATEWAY]).not.toHaveProperty('server_id');
    const [table, schema] = config.pipelines[PIPELINE]?.objects ?? [];
    expect(table).toEqual({
      table: {
        source_schema: 'retail_db',
        source_table: 'orders',
        destination_catalog: 'retail_analytics',
        destination_schema: 'bronze',
        destination_table: 'orders',
        table_configuration: { scd_type: 'SCD_TYPE_1' },
      },
    });
    expect(schema).toMatchObject({ schema: { table_configuration: { scd_type: 'SCD_TYPE_1' } } });
  });

  it('keeps the full table_configuration', () => {
    const text = edit(
      EXAMPLE,
      'table_configuration: { scd_type: SCD_TYPE_1 }\n      - schema',
      'table_configuration: { scd_type: SCD_TYPE_2, primary_keys: [id, region], include_columns: [id, region, name] }\n      - schema',
    );
    const object = parseConfig(text, CONFIG_PATH).pipelines[PIPELINE]?.objects[0];
    expect(object).toMatchObject({
      table: {
        table_configuration: {
          scd_type: 'SCD_TYPE_2',
          primary_keys: ['id', 'region'],
          include_columns: ['id', 'region', 'name'],
        },
      },
    });
  });

  it('accepts MySQL source names that are not identifiers', () => {
    let text = edit(EXAMPLE, 'source_table: customers', 'source_table: "2024-orders$"');
    text = edit(text, 'destination_table: customers', 'destination_table: orders_2024');
    const object = parseConfig(text, CONFIG_PATH).pipelines[PIPELINE]?.objects[0];
    expect(object).toMatchObject({
      table: { source_table: '2024-orders$', destination_table: 'orders_2024' },
    });
  });

  it('requires destination_table when the source name is not an identifier', () => {
    let text = edit(EXAMPLE, 'source_table: customers', 'source_table: order-items');
    text = edit(text, '          destination_table: customers\n', '');
    expect(problems(parseError(text))).toEqual([
      `pipelines.${PIPELINE}.objects[0].table.destination_table: is required because source_table "order-items" is not a valid destination name (letters, digits and "_", not starting with a digit)`,
    ]);
  });

  it('resolves absolute and home-relative warehouses', () => {
    expect(parseConfig(edit(EXAMPLE, './lakehouse', '/data/lake'), CONFIG_PATH).warehouse).toBe('/data/lake');
    expect(parseConfig(edit(EXAMPLE, './lakehouse', '~/lake'), CONFIG_PATH).warehouse).toBe(
      join(homedir(), 'lake'),
    );
    expect(parseConfig(edit(EXAMPLE, './lakehouse', '../lake'), CONFIG_PATH).warehouse).toBe('/srv/lake');
  });

  it('accepts a config with only a warehouse', () => {
    expect(parseConfig('warehouse: lake\n', CONFIG_PATH)).toEqual({
      configPath: CONFIG_PATH,
      warehouse: '/srv/tributary/lake',
      connections: {},
      gateways: {},
      pipelines: {},
    });
  });

  it('resolves a relative config path to an absolute one', () => {
    const config = parseConfig('warehouse: lake\n', 'conf/tributary.yaml');
    expect(config.configPath).toBe(join(process.cwd(), 'conf/tributary.yaml'));
    expect(config.warehouse).toBe(join(process.cwd(), 'conf/lake'));
  });

  describe('plaintext passwords', () => {
    it('refuses a plaintext password, naming the path but never the value', () => {
      const error = parseError(edit(EXAMPLE, '"{{secrets/mysql_credentials/cdc_password}}"', SECRET_VALUE));
      expect(error.code).toBe('CONFIG_PLAINTEXT_SECRET');
      expect(error.message.startsWith(CONFIG_PATH)).toBe(true);
      expect(error.message).toContain('connections.retail_mysql_connection.password');
      expect(error.message).toContain('(line 8)');
      expect(error.message).not.toContain(SECRET_VALUE);
      expect(error.hint).not.toContain(SECRET_VALUE);
      expect(error.hint).toContain('tributary secrets create-scope --scope mysql_credentials');
      expect(error.hint).toContain('tributary secrets put --scope mysql_credentials --key cdc_password');
      expect(error.hint).toContain('stdin');
      expect(error.hint).toContain('password: "{{secrets/mysql_credentials/cdc_password}}"');
      expect(error.hint).toContain('TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD');
    });

    it('takes precedence over other problems, which might otherwise echo nearby values', () => {
      let text = edit(EXAMPLE, '"{{secrets/mysql_credentials/cdc_password}}"', `"${SECRET_VALUE}"`);
      text = edit(text, 'port: 3306', 'port: nope');
      const error = parseError(text);
      expect(error.code).toBe('CONFIG_PLAINTEXT_SECRET');
      expect(error.message).not.toContain(SECRET_VALUE);
    });

    it('treats a numeric password as plaintext', () => {
      const error = parseError(edit(EXAMPLE, '"{{secrets/mysql_credentials/cdc_password}}"', '12345678'));
      expect(error.code).toBe('CONFIG_PLAINTEXT_SECRET');
      expect(error.message).not.toContain('12345678');
    });

    it('suggests distinct keys for several plaintext connections', () => {
      const text = `warehouse: lake
connections:
  a:
    type: mysql
    host: h1
    user: app
    password: ${SECRET_VALUE}
  b:
    type: mysql
    host: h2
    user: app
    password: other-${SECRET_VALUE}
`;
      const error = parseError(text);
      expect(error.code).toBe('CONFIG_PLAINTEXT_SECRET');
      expect(error.message).toContain('connections.a.password');
      expect(error.message).toContain('connections.b.password');
      expect(error.hint).toContain('--key app_password');
      expect(error.hint).toContain('--key b_password');
      expect(`${error.message}\n${error.hint}`).not.toContain(SECRET_VALUE);
    });

    it('reports a malformed reference as invalid without echoing it', () => {
      const error = parseError(
        edit(EXAMPLE, '"{{secrets/mysql_credentials/cdc_password}}"', '"{{secrets/my creds/x}}"'),
      );
      expect(error.code).toBe('CONFIG_INVALID');
      expect(problems(error)).toEqual([
        expect.stringMatching(
          /^connections\.retail_mysql_connection\.password: is not a valid secret reference/,
        ),
      ]);
      expect(error.message).not.toContain('my creds');
    });

    it('accepts whitespace inside the reference braces', () => {
      const text = edit(
        EXAMPLE,
        '"{{secrets/mysql_credentials/cdc_password}}"',
        '"{{ secrets/mysql_credentials/cdc_password }}"',
      );
      expect(parseConfig(text, CONFIG_PATH).connections[CONNECTION]?.password).toBe(
        '{{ secrets/mysql_credentials/cdc_password }}',
      );
    });
  });

  describe('validation errors', () => {
    it('reports an undefined gateway with the path and the defined names', () => {
      const error = parseError(edit(EXAMPLE, 'gateway: retail_ingestion_gateway', 'gateway: x'));
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.message.startsWith(`${CONFIG_PATH}: `)).toBe(true);
      expect(error.message).toContain(
        'pipelines.retail_ingestion_pipeline.gateway: gateway "x" is not defined (defined: retail_ingestion_gateway) (line 16)',
      );
    });

    it('reports an undefined connection', () => {
      const error = parseError(edit(EXAMPLE, 'connection: retail_mysql_connection', 'connection: other'));
      expect(problems(error)).toEqual([
        'gateways.retail_ingestion_gateway.connection: connection "other" is not defined (defined: retail_mysql_connection)',
      ]);
    });

    it('says "none" when nothing is defined', () => {
      const error = parseError(
        'warehouse: lake\npipelines:\n  p:\n    gateway: g\n    objects: [{ schema: { source_schema: s, destination_catalog: c, destination_schema: d } }]\n',
      );
      expect(problems(error)).toEqual(['pipelines.p.gateway: gateway "g" is not defined (defined: none)']);
    });

    it('catches misspelt keys with a suggestion, at the path of the key', () => {
      const error = parseError(edit(EXAMPLE, 'source_table: customers', 'source_tabel: customers'));
      // A missing key points at the line of the mapping that lacks it.
      expect(problems(error)).toEqual([
        'pipelines.retail_ingestion_pipeline.objects[0].table.source_table: is required',
        'pipelines.retail_ingestion_pipeline.objects[0].table.source_tabel: unknown key (did you mean "source_table"?)',
      ]);
      expect(error.message).toContain('.table.source_table: is required (line 18)');
      expect(error.message).toContain('source_tabel: unknown key (did you mean "source_table"?) (line 20)');
    });

    it('refuses the change data feed on a table keeping its commit time in _commit_timestamp', () => {
      const cdf = "table_properties: { delta.enableChangeDataFeed: 'true' }";
      const error = parseError(
        edit(EXAMPLE, 'table_configuration: { scd_type: SCD_TYPE_1 }', `table_configuration: { ${cdf} }`),
      );
      expect(problems(error)).toEqual([
        "pipelines.retail_ingestion_pipeline.objects[0].table.table_configuration.commit_timestamp_column: delta.enableChangeDataFeed reserves the column name _commit_timestamp for the change feed's own column; set commit_timestamp_column to another name, e.g. _source_commit_timestamp",
      ]);
      const renamed = parseConfig(
        edit(
          EXAMPLE,
          'table_configuration: { scd_type: SCD_TYPE_1 }',
          `table_configuration: { ${cdf}, commit_timestamp_column: _source_commit_timestamp }`,
        ),
        CONFIG_PATH,
      ).pipelines[PIPELINE]?.objects[0];
      expect(renamed).toMatchObject({
        table: { table_configuration: { commit_timestamp_column: '_source_commit_timestamp' } },
      });
    });

    it('lists the allowed keys when nothing is close', () => {
      const error = parseError(`${EXAMPLE}frobnicate: true\n`);
      expect(problems(error)).toEqual([
        'frobnicate: unknown key (allowed: warehouse, connections, gateways, pipelines)',
      ]);
    });

    it('lists every problem at once, in document order, with array indices in brackets', () => {
      let text = edit(EXAMPLE, 'port: 3306', 'port: 70000');
      text = edit(text, 'storage: retail_analytics.landing.ingestion_volume', 'storage: landing.volume');
      text = edit(
        text,
        'destination_schema: bronze\n          table_configuration: { scd_type: SCD_TYPE_1 }\n',
        'destination_schema: 1bronze\n          table_configuration: { scd_type: SCD_TYPE_1 }\n',
      );
      text = edit(text, 'scd_type: SCD_TYPE_1 }\n      - schema', 'scd_type: SCD3 }\n      - schema');
      text = edit(text, 'gateway: retail_ingestion_gateway', 'gateway: nope');
      const error = parseError(text);
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.message.split('\n')[0]).toBe(`${CONFIG_PATH}: invalid configuration (5 problems)`);
      expect(problems(error)).toEqual([
        'connections.retail_mysql_connection.port: must be between 1 and 65535',
        'gateways.retail_ingestion_gateway.storage: "landing.volume" is not a volume name; expected <catalog>.<schema>.<volume> (each letters, digits and "_", not starting with a digit)',
        'pipelines.retail_ingestion_pipeline.gateway: gateway "nope" is not defined (defined: retail_ingestion_gateway)',
        'pipelines.retail_ingestion_pipeline.objects[0].table.table_configuration.scd_type: must be SCD_TYPE_1 or SCD_TYPE_2',
        'pipelines.retail_ingestion_pipeline.objects[1].schema.destination_schema: "1bronze" is not a valid name (letters, digits and "_", not starting with a digit)',
      ]);
    });

    it('reports wrong types without echoing values', () => {
      const error = parseError(edit(EXAMPLE, 'host: 127.0.0.1', 'host: [a, b]'));
      expect(problems(error)).toEqual([
        'connections.retail_mysql_connection.host: expected a string, got a list',
      ]);
      const error2 = parseError(edit(EXAMPLE, 'server_id: 5401', 'server_id: 54.5'));
      expect(problems(error2)).toEqual([
        'gateways.retail_ingestion_gateway.server_id: expected an integer, got a fractional number',
      ]);
    });

    it('reports missing required fields', () => {
      const error = parseError(edit(EXAMPLE, '    user: cdc_user\n', ''));
      expect(problems(error)).toEqual(['connections.retail_mysql_connection.user: is required']);
      expect(problems(parseError('connections: {}\n'))).toEqual(['warehouse: is required']);
    });

    it('accepts a schema_evolution policy and refuses an unknown one', () => {
      const text = edit(
        EXAMPLE,
        '    gateway: retail_ingestion_gateway\n    objects:',
        '    gateway: retail_ingestion_gateway\n    schema_evolution: fail\n    objects:',
      );
      expect(parseConfig(text, CONFIG_PATH).pipelines[PIPELINE]?.schema_evolution).toBe('fail');
      expect(
        problems(parseError(text.replace('schema_evolution: fail', 'schema_evolution: sometimes'))),
      ).toEqual(['pipelines.retail_ingestion_pipeline.schema_evolution: must be evolve, fail or ignore']);
    });

    it('says sqlserver is not supported yet, and lists what is', () => {
      expect(problems(parseError(edit(EXAMPLE, 'type: mysql', 'type: sqlserver')))).toEqual([
        'connections.retail_mysql_connection.type: connection type "sqlserver" is not supported yet (supported: mysql, postgresql; use mysql for MariaDB too)',
      ]);
      expect(problems(parseError(edit(EXAMPLE, 'type: mysql', 'type: oracle')))).toEqual([
        'connections.retail_mysql_connection.type: must be one of: mysql, postgresql (use mysql for MariaDB too)',
      ]);
    });

    it('keeps settings to the connection type they belong to', () => {
      const pg = edit(EXAMPLE, 'type: mysql', 'type: postgresql');
      expect(problems(parseError(pg))).toEqual([
        'connections.retail_mysql_connection.database: is required for a postgresql connection: the database whose tables are captured (a replication slot belongs to one database)',
        'gateways.retail_ingestion_gateway.server_id: is for mysql connections only (a binlog replica id); a postgresql gateway uses slot_name',
      ]);
      let mysql = edit(EXAMPLE, '    port: 3306\n', '    port: 3306\n    database: retail_db\n');
      mysql = edit(mysql, '    server_id: 5401\n', '    slot_name: s1\n');
      mysql = edit(
        mysql,
        '          source_schema: retail_db\n',
        '          source_catalog: retail_db\n          source_schema: retail_db\n',
      );
      expect(problems(parseError(mysql))).toEqual([
        'connections.retail_mysql_connection.database: is for postgresql connections only; a mysql connection reaches every database, named as source_schema in the pipeline objects',
        'gateways.retail_ingestion_gateway.slot_name: is for postgresql connections only; a mysql gateway reads the binlog (see server_id)',
        'pipelines.retail_ingestion_pipeline.objects[0].table.source_catalog: is for postgresql sources only; MySQL has no catalogs (the database is source_schema)',
      ]);
    });

    it('parses a postgresql connection, defaulting its port, and checks source_catalog against its database', () => {
      let text = edit(EXAMPLE, 'type: mysql', 'type: postgresql');
      text = edit(text, '    port: 3306\n', '    database: retail_db\n');
      text = edit(
        text,
        '    server_id: 5401\n',
        '    slot_name: retail_slot\n    publication_name: retail_pub\n',
      );
      text = edit(
        text,
        '          source_schema: retail_db\n',
        '          source_catalog: retail_db\n          source_schema: public\n',
      );
      const config = parseConfig(text, CONFIG_PATH);
      expect(config.connections[CONNECTION]).toMatchObject({
        type: 'postgresql',
        port: 5432,
        database: 'retail_db',
      });
      expect(config.gateways[GATEWAY]).toMatchObject({
        slot_name: 'retail_slot',
        publication_name: 'retail_pub',
      });
      expect(config.pipelines[PIPELINE]?.objects[0]).toMatchObject({
        table: { source_catalog: 'retail_db', source_schema: 'public', source_table: 'customers' },
      });
      expect(
        problems(parseError(edit(text, 'source_catalog: retail_db', 'source_catalog: other_db'))),
      ).toEqual([
        'pipelines.retail_ingestion_pipeline.objects[0].table.source_catalog: "other_db" is not the connection\'s database "retail_db"; a gateway captures one database (add a connection and gateway per database)',
      ]);
      expect(problems(parseError(edit(text, 'slot_name: retail_slot', 'slot_name: Retail-Slot')))).toEqual([
        'gateways.retail_ingestion_gateway.slot_name: must be 1 to 63 lower-case letters, digits or "_" (a PostgreSQL replication slot name)',
      ]);
    });

    it('rejects names that are not identifiers, quoting them in the path', () => {
      const error = parseError(edit(EXAMPLE, '  retail_ingestion_pipeline:', '  retail-pipeline:'));
      expect(problems(error)).toEqual([
        'pipelines["retail-pipeline"]: "retail-pipeline" is not a valid name (letters, digits and "_", not starting with a digit)',
      ]);
    });

    it('requires exactly one of table or schema per object', () => {
      const text = edit(
        EXAMPLE,
        '      - schema:\n',
        '      - {}\n      - table: { source_schema: a, source_table: b, destination_catalog: c, destination_schema: d }\n        schema: { source_schema: a, destination_catalog: c, destination_schema: d }\n      - schema:\n',
      );
      expect(problems(parseError(text))).toEqual([
        'pipelines.retail_ingestion_pipeline.objects[1]: expected either a "table" or a "schema" entry',
        'pipelines.retail_ingestion_pipeline.objects[2]: has both "table" and "schema"; write them as separate entries',
      ]);
    });

    it('requires at least one object', () => {
      const text = `${EXAMPLE.slice(0, EXAMPLE.indexOf('    objects:'))}    objects: []\n`;
      expect(problems(parseError(text))).toEqual([
        'pipelines.retail_ingestion_pipeline.objects: must list at least one table or schema',
      ]);
    });

    it('rejects per-table options on a schema and include_columns with exclude_columns', () => {
      let text = edit(
        EXAMPLE,
        'scd_type: SCD_TYPE_1 }\n      - schema',
        'scd_type: SCD_TYPE_1, include_columns: [a], exclude_columns: [b] }\n      - schema',
      );
      text = edit(
        text,
        'table_configuration: { scd_type: SCD_TYPE_1 }\n',
        'table_configuration: { primary_keys: [id] }\n',
      );
      expect(problems(parseError(text))).toEqual([
        'pipelines.retail_ingestion_pipeline.objects[0].table.table_configuration.exclude_columns: cannot be combined with include_columns; use one or the other',
        'pipelines.retail_ingestion_pipeline.objects[1].schema.table_configuration.primary_keys: unknown key (allowed: scd_type, table_properties, commit_timestamp_column)',
      ]);
    });

    it('rejects two objects writing the same destination table', () => {
      const text = `warehouse: lake
connections:
  c: { type: mysql, host: h, user: u, password: "{{secrets/s/k}}" }
gateways:
  g: { connection: c, storage: a.b.v }
pipelines:
  p1:
    gateway: g
    objects:
      - table: { source_schema: db, source_table: t, destination_catalog: cat, destination_schema: bronze }
  p2:
    gateway: g
    objects:
      - table: { source_schema: db2, source_table: x, destination_catalog: cat, destination_schema: bronze, destination_table: t }
`;
      expect(problems(parseError(text))).toEqual([
        'pipelines.p2.objects[0].table: destination table cat.bronze.t is also written by pipelines.p1.objects[0].table',
      ]);
    });

    it('rejects two gateways sharing a server_id', () => {
      const text = `warehouse: lake
connections:
  c: { type: mysql, host: h, user: u, password: "{{secrets/s/k}}" }
gateways:
  g1: { connection: c, storage: a.b.v, server_id: 7 }
  g2: { connection: c, storage: a.b.w, server_id: 7 }
`;
      expect(problems(parseError(text))).toEqual([
        'gateways.g2.server_id: server_id 7 is also used by gateways.g1; each binlog reader needs its own server id',
      ]);
    });

    it('reports an empty file and a non-mapping document', () => {
      expect(parseError('').code).toBe('CONFIG_INVALID');
      expect(problems(parseError('# only a comment\n'))[0]).toMatch(/^\(top level\): the file is empty/);
      expect(problems(parseError('- a\n- b\n'))).toEqual(['(top level): expected a mapping, got a list']);
    });

    it('reports YAML syntax errors with line and column and no source excerpt', () => {
      const error = parseError(
        `warehouse: lake\nconnections:\n  c: {type: mysql, password: ${SECRET_VALUE}\n`,
      );
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.message.startsWith(`${CONFIG_PATH}: not valid YAML`)).toBe(true);
      expect(error.message).toMatch(/line \d+, column \d+: /);
      expect(error.message).not.toContain(SECRET_VALUE);
    });

    it('reports several YAML documents in one file', () => {
      expect(parseError('warehouse: a\n---\nwarehouse: b\n').message).toContain(
        'line 2, column 1: the file must hold a single YAML document',
      );
    });

    it('reports duplicate keys', () => {
      const error = parseError('warehouse: a\nwarehouse: b\n');
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.message).toContain('line 2, column 1');
    });
  });
});

describe('formatPath', () => {
  it('formats keys and indices', () => {
    expect(formatPath([])).toBe('(top level)');
    expect(formatPath(['pipelines', 'p', 'objects', 1, 'table', 'source_table'])).toBe(
      'pipelines.p.objects[1].table.source_table',
    );
    expect(formatPath(['connections', 'my conn'])).toBe('connections["my conn"]');
  });
});

describe('loadConfig and resolveConnectionPassword', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tributary-config-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a file and resolves the warehouse against its directory', async () => {
    await mkdir(join(dir, 'conf'));
    const file = join(dir, 'conf', 'tributary.yaml');
    await writeFile(file, EXAMPLE);
    const config = await loadConfig(file);
    expect(config.configPath).toBe(file);
    expect(config.warehouse).toBe(join(dir, 'conf', 'lakehouse'));
  });

  it('reports a missing file with a hint', async () => {
    const file = join(dir, 'missing.yaml');
    const error = await loadConfig(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isTributaryError(error) && error.code).toBe('CONFIG_NOT_FOUND');
    expect((error as TributaryError).message).toContain(file);
    expect((error as TributaryError).hint).toBe('create tributary.yaml or pass --config <file>');
  });

  it('puts the file path first in validation errors', async () => {
    const file = join(dir, 'tributary.yaml');
    await writeFile(file, edit(EXAMPLE, 'gateway: retail_ingestion_gateway', 'gateway: x'));
    const error = await loadConfig(file).then(
      () => undefined,
      (e: unknown) => e as TributaryError,
    );
    expect(error?.code).toBe('CONFIG_INVALID');
    expect(error?.message.startsWith(`${file}: `)).toBe(true);
  });

  it('resolves a connection password from the environment or the store', async () => {
    const config = parseConfig(EXAMPLE, CONFIG_PATH);
    const conn = config.connections[CONNECTION];
    if (conn === undefined) throw new Error('fixture');
    const store = new SecretStore(dir);
    expect(
      await resolveConnectionPassword(conn, store, { TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD: 'e' }),
    ).toBe('e');
    await store.createScope('mysql_credentials');
    await store.put('mysql_credentials', 'cdc_password', SECRET_VALUE);
    expect(await resolveConnectionPassword(conn, store, {})).toBe(SECRET_VALUE);
  });

  it('names the connection when its secret is missing', async () => {
    const conn = parseConfig(EXAMPLE, CONFIG_PATH).connections[CONNECTION];
    if (conn === undefined) throw new Error('fixture');
    const error = await resolveConnectionPassword(conn, new SecretStore(dir), {}).then(
      () => undefined,
      (e: unknown) => e as TributaryError,
    );
    expect(error?.code).toBe('SECRET_NOT_FOUND');
    expect(error?.message).toContain('connections.retail_mysql_connection.password');
    expect(error?.message).toContain('TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD');
    expect(error?.hint).toContain('tributary secrets put --scope mysql_credentials --key cdc_password');
  });
});

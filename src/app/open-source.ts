/**
 * Builds the SourceConnector a connection's type calls for. Together with run-pipeline.ts, the only place
 * that knows the concrete sources.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type ConnectionConfig,
  defaultSlotName,
  type GatewayConfig,
  resolveConnectionPassword,
  type TributaryConfig,
} from '../config/load-config.js';
import { messageOf, TributaryError } from '../core/errors.js';
import type { SourceConnector } from '../core/ports.js';
import { SecretStore, tributaryHome } from '../secrets/secret-store.js';
import { MySqlSource } from '../sources/mysql/mysql-source.js';
import { PostgresSource } from '../sources/postgres/postgres-source.js';
import { gatewayStagingDir } from './gateway-volume.js';

/** The MySQL source's schema history (src/sources/mysql/schema-history.ts), in the gateway's staging directory. */
const MYSQL_SCHEMA_HISTORY_FILE = '.mysql-schema-history.jsonl';

/** What a source may say while it works: progress and warnings, through the pipeline's logger. */
export interface SourceLog {
  info(message: string): void;
  warn(message: string): void;
}

/** The source a gateway reads. */
export async function openSource(
  config: TributaryConfig,
  gatewayName: string,
  log?: SourceLog,
): Promise<SourceConnector> {
  const gateway = config.gateways[gatewayName];
  const connection = gateway ? config.connections[gateway.connection] : undefined;
  if (!gateway || !connection) throw new TributaryError('INTERNAL', `gateway ${gatewayName} not validated`);
  return openConnectionSource(config, connection, gateway, log);
}

/**
 * The source behind a connection, as seen through `gateway` (its replica id or slot), or through the first
 * gateway of the connection when none is named (preflight, `SHOW TABLES ... USING CONNECTION`).
 */
export async function openConnectionSource(
  config: TributaryConfig,
  connection: ConnectionConfig,
  gateway: GatewayConfig | undefined = Object.values(config.gateways).find(
    (g) => g.connection === connection.name,
  ),
  log?: SourceLog,
): Promise<SourceConnector> {
  const password = await resolveConnectionPassword(connection, new SecretStore(tributaryHome()));
  const common = {
    name: connection.name,
    host: connection.host,
    port: connection.port,
    user: connection.user,
    password,
    ...(await tlsOf(connection)),
  };
  const gatewayName = gateway?.name ?? connection.name;
  if (connection.type === 'postgresql') {
    return new PostgresSource(
      { ...common, database: connection.database ?? '' },
      {
        slot: gateway?.slot_name ?? defaultSlotName(gatewayName),
        publication: gateway?.publication_name ?? `tributary_${gatewayName}`,
        publishAllTables: Object.values(config.pipelines).some(
          (p) => p.gateway === gatewayName && p.objects.some((o) => 'schema' in o),
        ),
        ...(log ? { log } : {}),
      },
    );
  }
  return new MySqlSource(common, {
    serverId: gateway?.server_id ?? defaultServerId(gatewayName),
    ...(log ? { log } : {}),
    // Beside the gateway's staging, so that it goes with it (a gateway that is reset starts a new history).
    ...(gateway ? { historyPath: join(gatewayStagingDir(config, gateway), MYSQL_SCHEMA_HISTORY_FILE) } : {}),
  });
}

/** A stable replica id per gateway, so two gateways on one source never collide by default. */
function defaultServerId(gateway: string): number {
  return 1_000_000 + (createHash('sha256').update(gateway).digest().readUInt32BE(0) % 1_000_000_000);
}

async function tlsOf(connection: ConnectionConfig) {
  const ssl = connection.ssl;
  if (!ssl || ssl.mode === 'disabled') return {};
  if (ssl.ca === undefined) return { tls: { mode: ssl.mode } };
  try {
    return { tls: { mode: ssl.mode, ca: await readFile(ssl.ca, 'utf8') } };
  } catch (error) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `connections.${connection.name}.ssl.ca: cannot read ${ssl.ca}: ${messageOf(error)}`,
      { hint: 'Point ssl.ca at the PEM file of the authority that signed the server certificate.' },
    );
  }
}

import type { TestProject } from 'vitest/node';
import { mariaDbFromEnv, startMariaDb } from '../../src/testing/mariadb-server.js';
import { postgresFromEnv, startPostgres } from '../../src/testing/postgres-server.js';

/**
 * Starts one MariaDB and one PostgreSQL for the whole integration run (or uses the ones named by
 * TRIBUTARY_TEST_MYSQL_HOST / TRIBUTARY_TEST_PG_HOST) and hands their addresses to the tests through
 * `inject('mysql')` and `inject('postgres')`.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [mysql, postgres] = await Promise.all([
    (async () => (await mariaDbFromEnv()) ?? (await startMariaDb()))(),
    (async () => (await postgresFromEnv()) ?? (await startPostgres()))(),
  ]);
  project.provide('mysql', {
    host: mysql.host,
    port: mysql.port,
    user: mysql.rootUser,
    password: mysql.rootPassword,
  });
  project.provide('postgres', {
    host: postgres.host,
    port: postgres.port,
    user: postgres.user,
    password: postgres.password,
  });
  return async () => {
    await Promise.all([mysql.stop(), postgres.stop()]);
  };
}

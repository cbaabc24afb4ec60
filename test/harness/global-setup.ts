import type { TestProject } from 'vitest/node';
import { mariaDbFromEnv, startMariaDb } from '../../src/testing/mariadb-server.js';

/**
 * Starts one MariaDB for the whole integration run (or uses the one named by TRIBUTARY_TEST_MYSQL_HOST) and
 * hands its address to the tests through `inject('mysql')`.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = (await mariaDbFromEnv()) ?? (await startMariaDb());
  project.provide('mysql', {
    host: server.host,
    port: server.port,
    user: server.rootUser,
    password: server.rootPassword,
  });
  return () => server.stop();
}

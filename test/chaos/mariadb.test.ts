/** The chaos scenarios (scenarios.ts) against a MariaDB this file starts, kills and restarts. */
import { chaosSuite } from './scenarios.js';
import { startChaosMariaDb } from './sources.js';

chaosSuite('mariadb', startChaosMariaDb);

/** The chaos scenarios (scenarios.ts) against a PostgreSQL this file starts, kills and restarts. */
import { chaosSuite } from './scenarios.js';
import { startChaosPostgres } from './sources.js';

chaosSuite('postgresql', startChaosPostgres);

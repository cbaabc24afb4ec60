#!/usr/bin/env node
// The installed entry point. The TypeScript sources are compiled to dist/ by `npm run build`, which npm
// runs as the `prepare` step of `npm ci` and `npm install`.
import { main } from '../dist/cli/main.js';

const code = await main(process.argv.slice(2));
// Exit explicitly (a driver may hold a socket open), but only once stdout and stderr are drained: a pipe
// reader would otherwise lose the tail of a large result.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));

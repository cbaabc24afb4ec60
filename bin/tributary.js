#!/usr/bin/env node
// The installed entry point. The TypeScript sources are compiled to dist/ by `npm run build`, which npm
// runs as the `prepare` step of `npm ci` and `npm install`.
import { main } from '../dist/cli/main.js';

process.exit(await main(process.argv.slice(2)));

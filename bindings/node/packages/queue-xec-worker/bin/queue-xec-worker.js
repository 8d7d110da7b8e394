#!/usr/bin/env node
'use strict';
// `queue-xec-worker`: runs a worker (see --help); `queue-xec-worker --setup` writes the tokens to ./.env.

const fs = require('node:fs');
const path = require('node:path');

const bundled = path.join(__dirname, '..', 'runtime', 'lib', 'cli.js');
const cli = fs.existsSync(bundled) ? require(bundled) : require('queuexec-native/lib/cli');

cli.main('worker', process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`queue-xec-worker: ${error.message}\n`);
    process.exitCode = 1;
  },
);

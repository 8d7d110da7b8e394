#!/usr/bin/env node
'use strict';
// `queue-xec-master --setup`: writes token and transferEncryptToken to ./.env.

const fs = require('node:fs');
const path = require('node:path');

const bundled = path.join(__dirname, '..', 'runtime', 'lib', 'setup.js');
const setup = fs.existsSync(bundled) ? require(bundled) : require('queuexec-native/lib/setup');

setup.main('master', process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`queue-xec-master: ${error.message}\n`);
    process.exitCode = 1;
  },
);

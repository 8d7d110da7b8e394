#!/usr/bin/env node
'use strict';
// npm prepack/postpack of queue-xec-master and queue-xec-worker: copies the shared JS layer
// (index.js and lib/) into <package>/runtime/, so the tarball works in a project that has never
// seen this repository. The addon is NOT bundled: it comes from the platform package
// @queuexec/native-<platform> (the packages' optionalDependencies; see lib/native.js and npm/).
// `--clean` removes the copy again.
//
//   node scripts/bundle-runtime.js <package dir> [--clean]

const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const pkg = path.resolve(process.argv[2] || '.');
const runtime = path.join(pkg, 'runtime');

fs.rmSync(runtime, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);

fs.mkdirSync(runtime, { recursive: true });
fs.copyFileSync(path.join(root, 'index.js'), path.join(runtime, 'index.js'));
fs.cpSync(path.join(root, 'lib'), path.join(runtime, 'lib'), { recursive: true });
console.error(`bundle-runtime: ${path.relative(root, runtime)} <- index.js, lib/`);

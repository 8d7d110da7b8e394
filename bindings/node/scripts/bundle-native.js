#!/usr/bin/env node
'use strict';
// npm prepack/postpack of queue-xec-master and queue-xec-worker: copies the shared JS layer and
// the addon built for this platform into <package>/runtime/, so the tarball installs and works
// in a project that has never seen this repository. `--clean` removes the copy again.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const pkg = path.resolve(process.argv[2] || '.');
const runtime = path.join(pkg, 'runtime');

fs.rmSync(runtime, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);

const addons = fs.existsSync(path.join(root, 'native'))
  ? fs.readdirSync(path.join(root, 'native')).filter((f) => /^queuexec\..+\.node$/.test(f))
  : [];
if (addons.length === 0) {
  console.error('bundle-native: no addon in bindings/node/native; run `npm install` (or `npm run build`) at the repository root first');
  process.exit(1);
}

fs.mkdirSync(path.join(runtime, 'native'), { recursive: true });
fs.copyFileSync(path.join(root, 'index.js'), path.join(runtime, 'index.js'));
fs.cpSync(path.join(root, 'lib'), path.join(runtime, 'lib'), { recursive: true });
for (const addon of addons) {
  const from = path.join(root, 'native', addon);
  const to = path.join(runtime, 'native', addon);
  // Debug builds carry hundreds of MB of debug info; the package needs none of it.
  try {
    execFileSync('strip', ['--strip-debug', '-o', to, from], { stdio: 'ignore' });
  } catch {
    fs.copyFileSync(from, to);
  }
}
console.error(`bundle-native: ${path.relative(root, runtime)} <- lib/, index.js, ${addons.join(', ')}`);

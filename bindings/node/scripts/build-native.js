#!/usr/bin/env node
'use strict';
// Builds the addon with plain `cargo build -p queuexec-node` and copies the library to
// native/queuexec.<platform>.node, where lib/native.js loads it from. Plain cargo (no
// `--target`, the workspace's target directory and dev profile) means the addon reuses what
// `cargo build --workspace` and the Rust tests already compiled; `napi build` would pass
// `--target` and compile the whole dependency tree again in a second directory.
//
//   node scripts/build-native.js [--release]

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const release = process.argv.includes('--release');

function platformName() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    let glibc = true;
    try {
      glibc = Boolean(process.report.getReport().header.glibcVersionRuntime);
    } catch {
      // No report support: assume glibc, the common case.
    }
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  if (platform === 'darwin') return `darwin-${arch}`;
  return `${platform}-${arch}`;
}

function libraryName() {
  if (process.platform === 'win32') return 'queuexec_node.dll';
  if (process.platform === 'darwin') return 'libqueuexec_node.dylib';
  return 'libqueuexec_node.so';
}

const cargo = process.env.CARGO || 'cargo';
const manifest = path.join(root, 'Cargo.toml');
try {
  execFileSync(cargo, ['build', '-p', 'queuexec-node', '--manifest-path', manifest, ...(release ? ['--release'] : [])], {
    stdio: 'inherit',
  });
} catch (error) {
  console.error(`build-native: \`cargo build -p queuexec-node\` failed (${error.message}); fix the error above and run \`npm run build\` again`);
  process.exit(1);
}

const metadata = JSON.parse(
  execFileSync(cargo, ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  }),
);
const from = path.join(metadata.target_directory, release ? 'release' : 'debug', libraryName());
const dir = path.join(root, 'native');
const to = path.join(dir, `queuexec.${platformName()}.node`);
if (!fs.existsSync(from)) {
  console.error(`build-native: cargo succeeded but ${from} is missing; is queuexec-node still a cdylib named queuexec_node?`);
  process.exit(1);
}
fs.mkdirSync(dir, { recursive: true });
// Copy then rename, so a process that has the old addon loaded keeps a whole file.
const partial = `${to}.partial`;
fs.copyFileSync(from, partial);
fs.renameSync(partial, to);
console.error(`build-native: ${path.relative(root, to)} <- ${from}`);

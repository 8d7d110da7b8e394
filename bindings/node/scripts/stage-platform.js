#!/usr/bin/env node
'use strict';
// Puts a release build of the addon into its platform package, npm/<platform>/queuexec.<platform>.node,
// stripped of symbols and debug info, ready for `npm pack` / `npm publish` there. Used by the release
// workflow (.github/workflows/release.yml) and by hand:
//
//   node scripts/stage-platform.js <platform> <built library>
//   node scripts/stage-platform.js linux-x64-gnu /work/tgt-release/x86_64-unknown-linux-gnu/release/libqueuexec_node.so
//
// Stripping: `strip --strip-unneeded` on Linux (llvm-strip when the host's strip does not know the
// architecture; STRIP=aarch64-linux-gnu-strip names another), `strip -x` on macOS; Windows DLLs
// keep their debug info in the .pdb already.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const [platform, built] = process.argv.slice(2);
if (!platform || !built) {
  console.error('usage: node scripts/stage-platform.js <platform> <built library>, e.g. linux-x64-gnu target/release/libqueuexec_node.so');
  process.exit(2);
}
const dir = path.join(root, 'npm', platform);
if (!fs.existsSync(path.join(dir, 'package.json'))) {
  console.error(`stage-platform: no platform package ${path.relative(root, dir)}; the platforms are ${fs.readdirSync(path.join(root, 'npm')).join(', ')}`);
  process.exit(2);
}
if (!fs.existsSync(built)) {
  console.error(`stage-platform: ${built} does not exist; build the addon first (cargo build -p queuexec-node --release, or the workflow's build step)`);
  process.exit(1);
}

const to = path.join(dir, `queuexec.${platform}.node`);
const partial = `${to}.partial`;
fs.copyFileSync(built, partial);

function tryStrip(tool, args) {
  try {
    execFileSync(tool, [...args, partial], { stdio: ['ignore', 'ignore', 'pipe'] });
    return true;
  } catch {
    return false;
  }
}

let stripped = 'not stripped (Windows keeps debug info in the .pdb)';
if (platform.startsWith('linux')) {
  const strip = process.env.STRIP || 'strip';
  if (tryStrip(strip, ['--strip-unneeded'])) stripped = `${strip} --strip-unneeded`;
  else if (tryStrip('llvm-strip', ['--strip-unneeded'])) stripped = 'llvm-strip --strip-unneeded';
  else {
    fs.rmSync(partial);
    console.error(`stage-platform: neither strip nor llvm-strip could strip ${built}; install binutils for its architecture (or llvm)`);
    process.exit(1);
  }
} else if (platform.startsWith('darwin')) {
  if (!tryStrip('strip', ['-x'])) {
    fs.rmSync(partial);
    console.error(`stage-platform: \`strip -x\` failed on ${built}; run this on macOS`);
    process.exit(1);
  }
  stripped = 'strip -x';
}
fs.renameSync(partial, to);
const size = fs.statSync(to).size;
console.error(`stage-platform: ${path.relative(root, to)} <- ${built} (${stripped}, ${(size / 1048576).toFixed(1)} MiB)`);

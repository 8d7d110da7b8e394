'use strict';
// Loads the addon that scripts/build-native.js (`npm run build`) put in ../native/ for this platform.

const fs = require('node:fs');
const path = require('node:path');

function platformTriples() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    let glibc = true;
    try {
      glibc = Boolean(process.report.getReport().header.glibcVersionRuntime);
    } catch {
      // No report support: assume glibc, the common case.
    }
    return glibc ? [`linux-${arch}-gnu`, `linux-${arch}-musl`] : [`linux-${arch}-musl`, `linux-${arch}-gnu`];
  }
  if (platform === 'win32') return [`win32-${arch}-msvc`, `win32-${arch}-gnu`];
  if (platform === 'darwin') return [`darwin-${arch}`, 'darwin-universal'];
  return [`${platform}-${arch}`];
}

function load() {
  const dir = path.join(__dirname, '..', 'native');
  const tried = [];
  for (const triple of platformTriples()) {
    const file = path.join(dir, `queuexec.${triple}.node`);
    tried.push(file);
    if (fs.existsSync(file)) return require(file);
  }
  const error = new Error(
    `the queuexec native addon for ${platformTriples()[0]} is missing (looked for ${tried.join(', ')}). ` +
      'In the queuexec repository run `npm install` at its root, which builds it; ' +
      'an installed package that lacks it was packed on another platform.',
  );
  error.code = 'ERR_QUEUEXEC_NATIVE_MISSING';
  throw error;
}

module.exports = load();

'use strict';
// Loads queuexec's native addon (napi-rs), in this order:
//   1. QUEUEXEC_NATIVE_LIBRARY_PATH, when set: that file and nothing else;
//   2. the local development build, ../native/queuexec.<platform>.node (scripts/build-native.js
//      puts it there; a packed queue-xec-* package has no native/ folder);
//   3. the platform package @queuexec/native-<platform>, which queue-xec-master and
//      queue-xec-worker list in their optionalDependencies (npm installs the one whose os, cpu
//      and libc match the machine).
// Otherwise it throws ERR_QUEUEXEC_NATIVE_MISSING, naming the platform, what was tried and the
// package to install.

const fs = require('node:fs');
const path = require('node:path');

/** Whether this Linux process runs on musl rather than glibc (Alpine, distroless-static...). */
function isMusl() {
  try {
    const header = process.report.getReport().header;
    if (header.glibcVersionRuntime) return false;
  } catch {
    // No report support: fall back to ldd below.
  }
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
  } catch {
    return false;
  }
}

/**
 * Platform names for this process, best first, as napi-rs names them: linux-x64-gnu,
 * linux-x64-musl, linux-arm64-gnu, darwin-x64, darwin-arm64, win32-x64-msvc...
 */
function platformNames() {
  const { platform, arch } = process;
  if (platform === 'linux') return isMusl() ? [`linux-${arch}-musl`] : [`linux-${arch}-gnu`];
  if (platform === 'win32') return [`win32-${arch}-msvc`];
  if (platform === 'darwin') return [`darwin-${arch}`];
  return [`${platform}-${arch}`];
}

/** The platform packages published for queue-xec-master and queue-xec-worker. */
const PUBLISHED = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc'];

function missing(message, causes) {
  const error = new Error(message);
  error.code = 'ERR_QUEUEXEC_NATIVE_MISSING';
  if (causes.length > 0) error.cause = causes[0];
  return error;
}

function describe(error) {
  return String(error && error.message ? error.message : error).split('\n')[0];
}

function load() {
  const names = platformNames();
  const tried = [];
  const causes = [];

  const override = process.env.QUEUEXEC_NATIVE_LIBRARY_PATH;
  if (override) {
    try {
      return require(path.resolve(override));
    } catch (error) {
      throw missing(
        `QUEUEXEC_NATIVE_LIBRARY_PATH=${override} did not load (${describe(error)}); point it at a queuexec.<platform>.node built for this machine, or unset it`,
        [error],
      );
    }
  }

  const dev = path.join(__dirname, '..', 'native');
  for (const name of names) {
    const file = path.join(dev, `queuexec.${name}.node`);
    if (!fs.existsSync(file)) {
      // Inside the repository (a Cargo.toml beside lib/) the missing dev build is worth naming.
      if (fs.existsSync(path.join(__dirname, '..', 'Cargo.toml'))) tried.push(`${file} (not built)`);
      continue;
    }
    tried.push(file);
    try {
      return require(file);
    } catch (error) {
      causes.push(error);
      tried[tried.length - 1] += ` (${describe(error)})`;
    }
  }

  for (const name of names) {
    const pkg = `@queuexec/native-${name}`;
    try {
      return require(pkg);
    } catch (error) {
      if (error && error.code === 'MODULE_NOT_FOUND' && describe(error).includes(pkg)) {
        tried.push(`${pkg} (not installed)`);
      } else {
        causes.push(error);
        tried.push(`${pkg} (${describe(error)})`);
      }
    }
  }

  const name = names[0];
  const published = PUBLISHED.includes(name);
  const advice = published
    ? `Install it with \`npm install @queuexec/native-${name}\` (npm installs it on its own with queue-xec-master or queue-xec-worker, unless optional dependencies were omitted: --omit=optional, --no-optional, or a lockfile made on another platform). ` +
      'In the queuexec repository, `npm install` at its root builds the addon instead.'
    : `No prebuilt addon is published for ${name} (there are: ${PUBLISHED.join(', ')}); build one from the queuexec repository (\`npm run build\` at its root) and point QUEUEXEC_NATIVE_LIBRARY_PATH at it.`;
  return missing(
    `the queuexec native addon for ${name} (${process.platform} ${process.arch}, Node ${process.version}) did not load; tried ${tried.join(', ')}. ${advice}`,
    causes,
  );
}

const loaded = load();
if (loaded instanceof Error) throw loaded;
module.exports = loaded;

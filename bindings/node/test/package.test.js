'use strict';
// The packages as a new user gets them: `npm pack` of queue-xec-master, queue-xec-worker and this
// platform's @queuexec/native-<platform>, installed from the tarballs into a fresh app whose
// node_modules/ already exists, and a master/worker pair there using only
// require('queue-xec-master') and require('queue-xec-worker'). The main tarballs carry no addon
// and stay under 1 MB; without the platform package the loader says what to install.
//
// The platform package gets the addon staged in bindings/node/npm/<platform>/ (a release build,
// scripts/stage-platform.js) or, when none is staged, the development build, stripped the same way.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { ROOT, FIXTURES, tmpdir, testEnv, run, MASTER_PKG, WORKER_PKG } = require('./helpers');

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const MB = 1024 * 1024;

function platformName() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    const glibc = Boolean(process.report.getReport().header.glibcVersionRuntime);
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

function pack(pkgDir, dest) {
  const out = execFileSync(npm, ['pack', '--json', '--pack-destination', dest], {
    cwd: pkgDir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120000,
  });
  const [info] = JSON.parse(out.slice(out.indexOf('[')));
  return {
    file: path.join(dest, info.filename),
    files: info.files.map((f) => f.path),
    version: info.version,
    size: info.size,
    unpackedSize: info.unpackedSize,
  };
}

/** Packs this platform's @queuexec/native-<platform> from a copy of bindings/node/npm/<platform>. */
function packPlatform(t, dest) {
  const name = platformName();
  const source = path.join(ROOT, 'npm', name);
  assert.ok(fs.existsSync(path.join(source, 'package.json')), `a platform package exists for ${name}`);
  const copy = path.join(tmpdir(t, 'qx-platform-'), name);
  fs.cpSync(source, copy, { recursive: true });
  const addon = `queuexec.${name}.node`;
  if (!fs.existsSync(path.join(copy, addon))) {
    const dev = path.join(ROOT, 'native', addon);
    assert.ok(fs.existsSync(dev), `no addon staged in npm/${name} and no development build at ${dev}; run \`npm run build\``);
    // As scripts/stage-platform.js does; the development build carries hundreds of MB of debug info.
    const stripped = path.join(copy, addon);
    try {
      execFileSync('strip', ['--strip-unneeded', '-o', stripped, dev], { stdio: 'ignore' });
    } catch {
      fs.copyFileSync(dev, stripped);
    }
  }
  return { name, ...pack(copy, dest) };
}

function install(project, tarballs, extra = []) {
  const result = spawnSync(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', ...extra, ...tarballs], {
    cwd: project,
    encoding: 'utf8',
    timeout: 300000,
  });
  assert.equal(result.status, 0, `npm install failed: ${result.stderr}`);
}

/** A fresh app as users have them: a package.json and a node_modules/ that npm already filled. */
function freshApp(t) {
  const project = tmpdir(t, 'qx-consumer-');
  const vendored = path.join(project, 'vendor', 'already-here');
  fs.mkdirSync(vendored, { recursive: true });
  fs.writeFileSync(path.join(vendored, 'package.json'), JSON.stringify({ name: 'already-here', version: '1.0.0' }));
  fs.writeFileSync(path.join(vendored, 'index.js'), 'module.exports = 42;\n');
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, dependencies: { 'already-here': 'file:vendor/already-here' } }),
  );
  install(project, []);
  assert.ok(fs.existsSync(path.join(project, 'node_modules', 'already-here')), 'the app has a node_modules/ before queue-xec arrives');
  return project;
}

test('the main tarballs are small, carry the JS layer and no addon, and depend on every platform package', { timeout: 120000 }, (t) => {
  const dest = tmpdir(t, 'qx-pack-');
  const version = require('../package.json').version;
  for (const pkgDir of [MASTER_PKG, WORKER_PKG]) {
    const tarball = pack(pkgDir, dest);
    const name = path.basename(pkgDir);
    assert.ok(tarball.size < MB, `${name} packs to ${tarball.size} bytes, not under 1 MB`);
    assert.deepEqual(tarball.files.filter((f) => f.endsWith('.node')), [], `${name} carries no addon`);
    for (const f of ['index.js', 'index.d.ts', 'runtime/index.js', 'runtime/lib/native.js', 'runtime/lib/worker.js']) {
      assert.ok(tarball.files.includes(f), `${name} has ${f}: ${tarball.files.join(', ')}`);
    }
    assert.equal(tarball.version, version, 'versions follow the workspace');
    const manifest = require(path.join(pkgDir, 'package.json'));
    const platforms = fs.readdirSync(path.join(ROOT, 'npm'));
    assert.deepEqual(
      Object.keys(manifest.optionalDependencies).sort(),
      platforms.map((p) => `@queuexec/native-${p}`).sort(),
      `${name} lists every platform package`,
    );
    for (const spec of Object.values(manifest.optionalDependencies)) assert.equal(spec, version);
    assert.ok(!fs.existsSync(path.join(pkgDir, 'runtime')), 'postpack removed the bundled copy');
  }
});

test("every package.json, package-lock.json and the wheel follow Cargo's workspace version", () => {
  const result = spawnSync(process.execPath, [path.join(ROOT, '..', '..', 'scripts', 'sync-version.js'), '--check'], {
    encoding: 'utf8',
    timeout: 30000,
  });
  assert.equal(result.status, 0, result.stderr);
  const cargo = fs.readFileSync(path.join(ROOT, '..', '..', 'Cargo.toml'), 'utf8');
  assert.match(cargo, new RegExp(`\\[workspace\\.package\\]\\nversion = "${require('../package.json').version.replace(/\./g, '\\.')}"`));
});

test('the platform packages say honestly which os, cpu and libc they are for', () => {
  const expected = {
    'linux-x64-gnu': ['linux', 'x64', 'glibc'],
    'linux-x64-musl': ['linux', 'x64', 'musl'],
    'linux-arm64-gnu': ['linux', 'arm64', 'glibc'],
    'darwin-x64': ['darwin', 'x64', undefined],
    'darwin-arm64': ['darwin', 'arm64', undefined],
    'win32-x64-msvc': ['win32', 'x64', undefined],
  };
  assert.deepEqual(fs.readdirSync(path.join(ROOT, 'npm')).sort(), Object.keys(expected).sort());
  for (const [name, [os, cpu, libc]] of Object.entries(expected)) {
    const manifest = require(path.join(ROOT, 'npm', name, 'package.json'));
    assert.equal(manifest.name, `@queuexec/native-${name}`);
    assert.deepEqual(manifest.os, [os], `${name} os`);
    assert.deepEqual(manifest.cpu, [cpu], `${name} cpu`);
    assert.deepEqual(manifest.libc, libc && [libc], `${name} libc`);
    assert.equal(manifest.main, `queuexec.${name}.node`);
    assert.deepEqual(manifest.files, [`queuexec.${name}.node`, 'README.md']);
  }
});

test('the packed tarballs install into a fresh app with a node_modules/ and a master/worker pair works there', { timeout: 600000 }, async (t) => {
  const dest = tmpdir(t, 'qx-pack-');
  const master = pack(MASTER_PKG, dest);
  const worker = pack(WORKER_PKG, dest);
  const platform = packPlatform(t, dest);
  assert.deepEqual(platform.files.sort(), ['README.md', 'package.json', `queuexec.${platform.name}.node`]);
  t.diagnostic(
    `sizes: queue-xec-master ${master.size} B, queue-xec-worker ${worker.size} B, ` +
      `@queuexec/native-${platform.name} ${platform.size} B packed / ${platform.unpackedSize} B unpacked`,
  );

  const project = freshApp(t);
  install(project, [master.file, worker.file, platform.file]);
  const modules = path.join(project, 'node_modules');
  assert.ok(fs.existsSync(path.join(modules, '@queuexec', `native-${platform.name}`, `queuexec.${platform.name}.node`)));
  assert.ok(fs.existsSync(path.join(modules, 'already-here', 'index.js')), 'the app keeps what it had');
  assert.ok(!fs.existsSync(path.join(modules, 'queuexec-native')), 'nothing from the repository is needed');

  // The setup command is there as a bin.
  const setup = spawnSync(path.join(modules, '.bin', 'queue-xec-master'), ['--setup'], {
    cwd: project,
    encoding: 'utf8',
    input: '',
    timeout: 60000,
    env: { ...process.env, token: '', transferEncryptToken: '' },
  });
  assert.equal(setup.status, 0, setup.stderr);
  assert.ok(fs.existsSync(path.join(project, '.env')));

  fs.mkdirSync(path.join(project, 'src'));
  fs.writeFileSync(
    path.join(project, 'src', 'task.js'),
    'class Task { async run(job) { const d = JSON.parse(job.data); return { sum: d.x + d.y }; } }\nmodule.exports = Task;\n',
  );
  fs.writeFileSync(
    path.join(project, 'master.js'),
    `const Master = require('queue-xec-master');
     const addon = Object.keys(require.cache).find((f) => f.endsWith('.node'));
     console.log(JSON.stringify({ addon }));
     const seen = [];
     const mm = new Master({
       execAssets: { dependencies: [], files: [{ masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' }] },
       onResults: (r) => { seen.push(r); if (seen.length === 5) { console.log(JSON.stringify({ results: seen })); mm.close(); } },
     });
     // Once: a repeated id is queued again (as in queue-xec), so a second join must not push again.
     mm.once('workerJoined', async () => {
       for (let i = 0; i < 5; i++) await mm.pushNewJob({ id: i, data: JSON.stringify({ x: i, y: 2 }) });
     });`,
  );
  const workerDir = path.join(project, 'w');
  fs.mkdirSync(workerDir);
  fs.copyFileSync(path.join(project, '.env'), path.join(workerDir, '.env'));
  fs.writeFileSync(path.join(workerDir, 'worker.js'), "const Worker = require('queue-xec-worker');\nnew Worker({ name: 'packed' });\n");

  // Tokens come from the .env the setup wrote (the core's .env parser), not from this test.
  const env = testEnv(t);
  delete env.token;
  delete env.transferEncryptToken;
  delete env.QUEUEXEC_NATIVE_LIBRARY_PATH;
  const w = run(t, path.join(workerDir, 'worker.js'), { cwd: workerDir, env });
  const m = run(t, path.join(project, 'master.js'), { cwd: project, env });
  const { addon } = await m.next((l) => 'addon' in l, 30000);
  assert.equal(
    fs.realpathSync(addon),
    fs.realpathSync(path.join(modules, '@queuexec', `native-${platform.name}`, `queuexec.${platform.name}.node`)),
    'the addon comes from the platform package',
  );
  const line = await m.next((l) => l.results, 60000);
  assert.deepEqual(
    line.results.map((r) => [Number(r.jobID), r.data.sum, r.worker.name]).sort((a, b) => a[0] - b[0]),
    [0, 1, 2, 3, 4].map((i) => [i, i + 2, 'packed']),
  );
  w.child.kill('SIGTERM');
});

/** The `queuexec` CLI: QUEUEXEC_CLI, or the debug build in the workspace's target directory. */
function cliBinary() {
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, '..', '..', 'target');
  const bin = process.env.QUEUEXEC_CLI || path.join(target, 'debug', process.platform === 'win32' ? 'queuexec.exe' : 'queuexec');
  assert.ok(fs.existsSync(bin), `no queuexec CLI at ${bin}: run \`cargo build -p queuexec-cli\` first, or set QUEUEXEC_CLI`);
  return bin;
}

/** A process whose stdout is plain text (the upstream examples print with console.dir). */
function spawnText(t, command, args, options) {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { child, stdout: '', stderr: '' };
  child.stdout.on('data', (d) => {
    out.stdout += d;
  });
  child.stderr.on('data', (d) => {
    out.stderr += d;
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return out;
}

/**
 * The results the upstream basic example printed with console.dir: the jobIDs (as printed, a
 * number), worker names, the moment-formatted dates the task returned, and results with an error.
 */
function printedResults(text) {
  const ok = /\{\s*jobID: (\d+),\s*worker: \{\s*id: '([^']+)',\s*name: '([^']+)'\s*\},\s*data: '-- [\d.e-]+ on (.+?) -- result <anything serialized>'\s*\}/g;
  const results = new Map();
  for (const m of text.matchAll(ok)) results.set(Number(m[1]), { worker: m[3], date: m[4] });
  const errors = [...text.matchAll(/jobID: (\d+),\s*worker: [^}]*\},\s*error: /g)].map((m) => Number(m[1]));
  return { results, errors };
}

/** Waits (at most `ms`) until the process printed `count` results, or fails saying what it printed. */
async function waitForResults(proc, count, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const printed = printedResults(proc.stdout);
    if (printed.results.size + printed.errors.length >= count) return printed;
    if (Date.now() > deadline || proc.child.exitCode !== null) {
      assert.fail(
        `${what}: ${printed.results.size} results and ${printed.errors.length} errors within ${ms} ms ` +
          `(exit ${proc.child.exitCode}); master output ends: ${proc.stdout.slice(-2000)} ${proc.stderr.slice(-2000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

test(
  "queue-xec's own examples run unchanged (but the require path) on the first try from the packed tarballs in fresh apps: with a Node worker, and with a CLI worker running the same task.js in the embedded runtime",
  { timeout: 600000 },
  async (t) => {
    const cli = cliBinary();
    const dest = tmpdir(t, 'qx-pack-');
    const master = pack(MASTER_PKG, dest);
    const worker = pack(WORKER_PKG, dest);
    const platform = packPlatform(t, dest);
    const upstream = path.join(FIXTURES, 'upstream');

    // The master's app: examples/basic as published, in an app with its own node_modules/.
    const masterApp = freshApp(t);
    install(masterApp, [master.file, platform.file]);
    for (const file of ['index.js', 'task.js']) fs.copyFileSync(path.join(upstream, 'basic', file), path.join(masterApp, file));
    // The worker's app: queue-xec-worker's example as published.
    const workerApp = freshApp(t);
    install(workerApp, [worker.file, platform.file]);
    fs.copyFileSync(path.join(upstream, 'worker', 'index.js'), path.join(workerApp, 'index.js'));

    // The examples set their own tokens; this test's room directory keeps them apart from
    // other tests', and its bundle cache starts empty.
    const cache = tmpdir(t, 'qx-bundle-cache-');
    const env = testEnv(t, { QUEUEXEC_CACHE_DIR: cache });
    delete env.QUEUEXEC_NATIVE_LIBRARY_PATH;
    const bundles = () => (fs.existsSync(path.join(cache, 'bundles')) ? fs.readdirSync(path.join(cache, 'bundles')) : []);

    // 1. A Node worker: it installs big.js and moment into its app, as queue-xec's did.
    const nodeWorker = spawnText(t, process.execPath, ['index.js'], { cwd: workerApp, env });
    const first = spawnText(t, process.execPath, ['index.js'], { cwd: masterApp, env });
    const byNode = await waitForResults(first, 500, 240000, 'the basic example with a Node worker');
    assert.deepEqual(byNode.errors, [], 'no job failed on the first try');
    assert.deepEqual([...byNode.results.keys()].sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i));
    for (const r of byNode.results.values()) {
      assert.equal(r.worker, 'worker_1');
      assert.match(r.date, /^[A-Z][a-z]+ \d{1,2}(st|nd|rd|th) \d{4}, \d{1,2}:\d\d:\d\d [ap]m$/, 'moment formatted the date');
    }
    assert.ok(fs.existsSync(path.join(workerApp, 'node_modules', 'moment', 'package.json')), 'the Node worker installed moment itself');
    assert.deepEqual(bundles(), [], 'the master built no dependency bundle: no Node worker asks for one, and it is never built at start');
    assert.ok(!fs.existsSync(path.join(workerApp, '.queuexec', 'bundles')), 'the Node worker was sent no bundle');
    nodeWorker.child.kill('SIGTERM');
    first.child.kill('SIGTERM');
    await new Promise((r) => first.child.once('exit', r));

    // 2. The same example and task.js with a CLI worker: task.js runs in the embedded runtime,
    // which cannot run npm, so the worker asks the master for the dependency bundle, built then.
    const workplace = tmpdir(t, 'qx-cli-workplace-');
    const cliEnv = { ...env, token: 'demoCHannel0', transferEncryptToken: '00000000000000000000000000000000' };
    const second = spawnText(t, process.execPath, ['index.js'], { cwd: masterApp, env });
    const cliWorker = spawnText(t, cli, ['worker', '--name', 'cli_1', '--workplace', workplace], { cwd: workplace, env: cliEnv });
    const byCli = await waitForResults(second, 500, 240000, `the basic example with a CLI worker (its stderr: ${cliWorker.stderr.slice(-1000)})`);
    assert.deepEqual(byCli.errors, [], 'no job failed on the first try');
    assert.deepEqual([...byCli.results.keys()].sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i));
    for (const r of byCli.results.values()) {
      assert.equal(r.worker, 'cli_1');
      assert.match(r.date, /^[A-Z][a-z]+ \d{1,2}(st|nd|rd|th) \d{4}, \d{1,2}:\d\d:\d\d [ap]m$/, 'moment formatted the date');
    }
    assert.equal(bundles().length, 1, 'the master built the bundle once, when the CLI worker asked, and cached it');
    const unpacked = fs.readdirSync(path.join(workplace, '.queuexec', 'bundles')).filter((d) => !d.startsWith('.'));
    assert.equal(unpacked.length, 1);
    for (const dep of ['moment', 'big.js']) {
      assert.ok(fs.existsSync(path.join(workplace, '.queuexec', 'bundles', unpacked[0], 'node_modules', dep, 'package.json')), `${dep} came in the bundle`);
    }
    cliWorker.child.kill('SIGTERM');
    second.child.kill('SIGTERM');
  },
);

test('without its platform package, requiring queue-xec-master names the platform and the package to install', { timeout: 300000 }, (t) => {
  const dest = tmpdir(t, 'qx-pack-');
  const master = pack(MASTER_PKG, dest);
  const project = freshApp(t);
  install(project, [master.file], ['--omit=optional']);
  const env = { ...process.env };
  delete env.QUEUEXEC_NATIVE_LIBRARY_PATH;
  const result = spawnSync(process.execPath, ['-e', "require('queue-xec-master')"], { cwd: project, encoding: 'utf8', timeout: 60000, env });
  assert.notEqual(result.status, 0, 'requiring fails without an addon');
  const name = platformName();
  assert.match(result.stderr, /ERR_QUEUEXEC_NATIVE_MISSING/);
  assert.ok(result.stderr.includes(`the queuexec native addon for ${name}`), result.stderr);
  assert.ok(result.stderr.includes(`npm install @queuexec/native-${name}`), result.stderr);
});

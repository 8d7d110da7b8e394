'use strict';
// `npm pack` of each package, installed into an empty project that has never seen this
// repository, and a master/worker pair there using only require('queue-xec-master') and
// require('queue-xec-worker').

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { tmpdir, testEnv, run, MASTER_PKG, WORKER_PKG } = require('./helpers');

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function pack(pkgDir, dest) {
  const out = execFileSync(npm, ['pack', '--json', '--pack-destination', dest], {
    cwd: pkgDir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [info] = JSON.parse(out.slice(out.indexOf('[')));
  return { file: path.join(dest, info.filename), files: info.files.map((f) => f.path), version: info.version };
}

test('the packed tarballs install into an empty project and a master/worker pair works there', { timeout: 600000 }, async (t) => {
  const dest = tmpdir(t, 'qx-pack-');
  const master = pack(MASTER_PKG, dest);
  const worker = pack(WORKER_PKG, dest);
  for (const tarball of [master, worker]) {
    assert.ok(tarball.files.includes('index.d.ts'), 'types are in the package');
    assert.ok(tarball.files.some((f) => /^runtime\/native\/queuexec\..+\.node$/.test(f)), `the addon is in the package: ${tarball.files.join(', ')}`);
    assert.equal(tarball.version, require('../package.json').version, 'versions follow the workspace');
  }
  assert.ok(!fs.existsSync(path.join(MASTER_PKG, 'runtime')), 'postpack removed the bundled copy');

  const project = tmpdir(t, 'qx-consumer-');
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  const install = spawnSync(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', master.file, worker.file], {
    cwd: project,
    encoding: 'utf8',
    timeout: 300000,
  });
  assert.equal(install.status, 0, install.stderr);
  assert.ok(!fs.existsSync(path.join(project, 'node_modules', 'queuexec-native')), 'nothing from the repository is needed');

  // The setup command is there as a bin.
  const setup = spawnSync(path.join(project, 'node_modules', '.bin', 'queue-xec-master'), ['--setup'], {
    cwd: project,
    encoding: 'utf8',
    input: '',
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
  const w = run(t, path.join(workerDir, 'worker.js'), { cwd: workerDir, env });
  const m = run(t, path.join(project, 'master.js'), { cwd: project, env });
  const line = await m.next((l) => l.results, 60000);
  assert.deepEqual(
    line.results.map((r) => [r.jobID, r.data.sum, r.worker.name]).sort((a, b) => a[0] - b[0]),
    [0, 1, 2, 3, 4].map((i) => [i, i + 2, 'packed']),
  );
  w.child.kill('SIGTERM');
});

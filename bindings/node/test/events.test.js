'use strict';
// The addon's events are the discriminated unions lib/native.d.ts declares (checked with the
// TypeScript compiler's own parser against what a real master and worker emit), and the stat
// names are the core's, the same as Python's.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

const { tmpdir, testEnv, tokens } = require('./helpers');
const Master = require('queue-xec-master');
const Worker = require('queue-xec-worker');

const DECLARATIONS = path.join(__dirname, '..', 'lib', 'native.d.ts');

function isolated(t) {
  const env = testEnv(t);
  const saved = { ...process.env };
  process.env.QUEUEXEC_ROOM_DIR = env.QUEUEXEC_ROOM_DIR;
  process.env.QUEUEXEC_MDNS = '0';
  delete process.env.token;
  delete process.env.transferEncryptToken;
  t.after(() => {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  });
}

/** In a fresh folder holding src/task.js (queue-xec's default task), for the test's length. */
function inAppFolder(t, task) {
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.writeFileSync(path.join(cwd, 'src', 'task.js'), task);
  const before = process.cwd();
  process.chdir(cwd);
  t.after(() => process.chdir(before));
  return cwd;
}

/**
 * The members of a union type alias of native.d.ts: kind -> {required: [...], optional: [...]}
 * (property names besides `kind`).
 */
function declaredUnion(name) {
  const source = ts.createSourceFile(DECLARATIONS, fs.readFileSync(DECLARATIONS, 'utf8'), ts.ScriptTarget.Latest, true);
  const alias = source.statements.find((s) => ts.isTypeAliasDeclaration(s) && s.name.text === name);
  assert.ok(alias && ts.isUnionTypeNode(alias.type), `native.d.ts declares ${name} as a union`);
  const members = new Map();
  for (const member of alias.type.types) {
    assert.ok(ts.isTypeLiteralNode(member), `${name}: every member is an object type`);
    let kind;
    const required = [];
    const optional = [];
    for (const prop of member.members) {
      const key = prop.name.text;
      if (key === 'kind') kind = prop.type.literal.text;
      else (prop.questionToken ? optional : required).push(key);
    }
    members.set(kind, { required: required.sort(), optional });
  }
  return members;
}

/** Asserts that each emitted event is a member of the declared union, key for key. */
function assertMatches(union, events, name) {
  for (const event of events) {
    const member = union.get(event.kind);
    assert.ok(member, `${name}: kind ${JSON.stringify(event.kind)} is declared`);
    const keys = Object.keys(event).filter((k) => k !== 'kind' && event[k] !== undefined);
    for (const key of member.required) assert.ok(keys.includes(key), `${name} ${event.kind}: has ${key}`);
    for (const key of keys) {
      assert.ok(member.required.includes(key) || member.optional.includes(key), `${name} ${event.kind}: ${key} is declared`);
    }
  }
}

/** A master that records the addon's events before lib/master.js dispatches them. */
class RecordingMaster extends Master {
  _dispatch(event, ...rest) {
    (this.recorded ||= []).push(event);
    return super._dispatch(event, ...rest);
  }
}

class RecordingWorker extends Worker {
  _dispatch(event, ...rest) {
    (this.recorded ||= []).push(event);
    return super._dispatch(event, ...rest);
  }
}

function waitFor(check, ms, what) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const tick = () => {
      if (check()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

test('native.d.ts declares the event kinds lib/ dispatches', () => {
  assert.deepEqual([...declaredUnion('MasterEvent').keys()].sort(), [
    'call',
    'drained',
    'result',
    'stats',
    'taskLoadFailed',
    'warning',
    'workerJoined',
    'workerLeft',
  ]);
  assert.deepEqual(
    [...declaredUnion('WorkerEvent').keys()].sort(),
    ['aborted', 'assetsInstalled', 'connected', 'disconnected', 'drained', 'jobCancelled', 'jobFinished', 'message', 'refused'],
  );
});

test('a real master and worker emit events that are members of the declared unions', { timeout: 60000 }, async (t) => {
  isolated(t);
  inAppFolder(
    t,
    'class Task { async run(job) { if (job.fail) throw new Error("no good"); return job.n * 2; } }\nmodule.exports = Task;\n',
  );
  const tk = tokens();
  const mm = new RecordingMaster({ ...tk, watchAssets: false });
  t.after(() => mm.close());
  await mm.ready;
  const results = [];
  mm.on('result', (r) => results.push(r));
  mm.on('error', (e) => results.push(e));
  await mm.pushNewJob({ id: 1, n: 21 });
  await mm.pushNewJob({ id: 2, fail: true }, { retries: 0 });
  const w = new RecordingWorker({ ...tk, name: 'union-worker' });
  await w.ready;
  await waitFor(() => results.length === 2 && (mm.recorded || []).some((e) => e.kind === 'drained'), 30000, 'both results and drained');
  await w.close();
  await waitFor(() => mm.recorded.some((e) => e.kind === 'workerLeft'), 30000, 'workerLeft');

  const masterKinds = new Set(mm.recorded.map((e) => e.kind));
  for (const kind of ['result', 'workerJoined', 'workerLeft', 'drained']) assert.ok(masterKinds.has(kind), `master emitted ${kind}`);
  assertMatches(declaredUnion('MasterEvent'), mm.recorded, 'MasterEvent');
  const joined = mm.recorded.find((e) => e.kind === 'workerJoined');
  assert.equal(joined.workerName, 'union-worker');
  const failed = mm.recorded.find((e) => e.kind === 'result' && e.result.error !== undefined);
  assert.match(failed.result.error, /no good/);

  const workerKinds = new Set(w.recorded.map((e) => e.kind));
  for (const kind of ['connected', 'assetsInstalled', 'jobFinished']) assert.ok(workerKinds.has(kind), `worker emitted ${kind}`);
  assertMatches(declaredUnion('WorkerEvent'), w.recorded, 'WorkerEvent');
  const finished = w.recorded.filter((e) => e.kind === 'jobFinished');
  assert.equal(finished.filter((e) => e.error === undefined).length, 1, 'a success carries no error key');
  assert.equal(finished.filter((e) => typeof e.error === 'string').length, 1);
});

test('a refused worker, a master that warns and a worker whose task cannot load emit declared members too', { timeout: 60000 }, async (t) => {
  isolated(t);
  inAppFolder(t, "require('left-pad');\nclass Task { async run() { return 1; } }\nmodule.exports = Task;\n");
  // No npm on PATH: the dependency bundle cannot be built (nothing is fetched), so the master warns.
  const noNpm = tmpdir(t);
  process.env.PATH = noNpm;
  process.env.QUEUEXEC_CACHE_DIR = tmpdir(t);
  const room = tokens().token;
  // One package name as a string is a list of one.
  const mm = new RecordingMaster({
    token: room,
    transferEncryptToken: 'x'.repeat(32),
    watchAssets: false,
    execAssets: { dependencies: 'left-pad' },
  });
  t.after(() => mm.close());
  const errors = [];
  mm.on('error', (e) => errors.push(e));
  await mm.ready;
  // The bundle is built only when a worker that cannot install dependencies asks for it: a
  // sandboxed one (the embedded runtime). Without it, this task cannot load.
  const sandboxed = new RecordingWorker({ token: room, transferEncryptToken: 'x'.repeat(32), sandbox: true });
  t.after(() => sandboxed.close());
  const warned = new Promise((resolve) => mm.once('warning', resolve));
  await mm.pushNewJob({ id: 'needs-left-pad', data: 1 });
  const warning = await warned;
  assert.match(warning, /npm was not found/);
  await waitFor(() => errors.length > 0, 30000, "the master's 'error' for the task that cannot load");
  assert.equal(errors[0].code, 'ERR_QUEUEXEC_TASK_LOAD');
  assert.match(errors[0].message, /cannot load the task/);
  assert.match(errors[0].reason, /npm was not found/);
  const w = new RecordingWorker({ token: room, transferEncryptToken: 'y'.repeat(32) });
  t.after(() => w.close());
  await new Promise((resolve) => w.once('error', resolve));
  await waitFor(() => (w.recorded || []).some((e) => e.kind === 'refused'), 10000, 'refused');
  assertMatches(declaredUnion('MasterEvent'), mm.recorded, 'MasterEvent');
  assertMatches(declaredUnion('WorkerEvent'), w.recorded, 'WorkerEvent');
  assert.ok(typeof w.recorded.find((e) => e.kind === 'refused').reason === 'string');
});

test("stats use the core's names, the same as Python's: dead for the master, failed for the worker", { timeout: 30000 }, async (t) => {
  isolated(t);
  inAppFolder(t, 'class Task { async run() { return 1; } }\nmodule.exports = Task;\n');
  const mm = new Master({ ...tokens(), watchAssets: false });
  t.after(() => mm.close());
  assert.deepEqual(Object.keys(await mm.stats()), [
    'queued',
    'delayed',
    'running',
    'done',
    'dead',
    'retried',
    'workers',
    'relayedWorkers',
    'relayedBytes',
  ]);
  const w = new Worker({ ...tokens() });
  t.after(() => w.close());
  // `path` is there only while connected (napi leaves out an absent optional field).
  assert.deepEqual(
    Object.keys(await w.stats()).filter((k) => k !== 'path'),
    ['done', 'failed', 'running', 'connected', 'relayedBytes'],
  );
});

test('a single string or object where a list is expected is one item; anything else is refused clearly', async (t) => {
  isolated(t);
  const cwd = inAppFolder(t, 'class Task { async run() { return 1; } }\nmodule.exports = Task;\n');
  fs.writeFileSync(path.join(cwd, 'extra.json'), '{}');
  const one = { masterPath: '/extra.json', name: 'extra.json', workerPath: '/extra.json' };
  const mm = new Master({ ...tokens(), watchAssets: false, listen: '/ip4/127.0.0.1/tcp/0', execAssets: { files: one } });
  t.after(() => mm.close());
  await mm.ready;
  assert.deepEqual(mm.execAssets.files.map((f) => f.name).sort(), ['extra.json', 'task.js']);
  const addrs = await mm.listenAddrs();
  assert.equal(addrs.length, 1);
  assert.match(addrs[0], /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
  assert.throws(
    () => new Master({ ...tokens(), execAssets: { files: 'task.js' } }),
    (e) => e.code === 'ERR_QUEUEXEC_CONFIG' && /execAssets.files must be a list/.test(e.message),
  );
});

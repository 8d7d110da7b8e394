'use strict';
// Logging as queue-xec's Logger did it: stdout, its LOG_LEVEL names and thresholds, local
// timestamps; colour only on a terminal, never with NO_COLOR; the core's lines included.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { tmpdir, testEnv, run, FIXTURES } = require('./helpers');
const { Logger } = require('queuexec-native/lib/logger');

/** A stream that keeps what is written; `isTTY` as asked. */
function sink(isTTY = false) {
  const chunks = [];
  return { isTTY, chunks, write: (s) => chunks.push(String(s)), text: () => chunks.join('') };
}

function everyLevel(level, env = {}, isTTY = false) {
  const stream = sink(isTTY);
  const log = new Logger(level, 'test', { stream, env });
  log.info('i');
  log.warn('w');
  log.error('e');
  log.debug('d');
  log.notice('n');
  return stream;
}

function labels(stream) {
  return stream.chunks.map((line) => /\[([A-Z]+)\] > (\w)/.exec(line)).map((m) => `${m[1]}:${m[2]}`);
}

test("LOG_LEVEL names and thresholds are queue-xec's: off < info < warn < error < debug", () => {
  assert.deepEqual(labels(everyLevel('off')), []);
  assert.deepEqual(labels(everyLevel('info')), ['INFO:i']);
  assert.deepEqual(labels(everyLevel('warn')), ['INFO:i', 'WARN:w', 'WARN:n']);
  assert.deepEqual(labels(everyLevel('error')), ['INFO:i', 'WARN:w', 'ERROR:e', 'WARN:n']);
  assert.deepEqual(labels(everyLevel('DEBUG')), ['INFO:i', 'WARN:w', 'ERROR:e', 'DEBUG:d', 'WARN:n']);
  assert.deepEqual(labels(everyLevel(undefined)), ['WARN:n'], 'unset: off, but what makes jobs fail still shows');
  assert.deepEqual(labels(everyLevel('fatal')), [], "env.sample's fatal means off, as in queue-xec");
  const unknown = everyLevel('loud');
  assert.match(unknown.chunks[0], /unknown loglevel "loud"/);
  assert.equal(unknown.chunks.length, 1, 'an unknown level is off after a one-line notice');
});

test('lines carry a local DD-MM HH:mm:ss timestamp; colour only on a terminal and never with NO_COLOR', () => {
  const plain = everyLevel('debug');
  const now = new Date();
  const two = (n) => String(n).padStart(2, '0');
  assert.match(plain.chunks[0], new RegExp(`^${two(now.getDate())}-${two(now.getMonth() + 1)} \\d\\d:\\d\\d:\\d\\d \\[INFO\\] > i\\n$`));
  assert.ok(!plain.text().includes('\x1b['), 'no escape codes when not a terminal');
  const tty = everyLevel('debug', {}, true);
  assert.ok(tty.text().includes('\x1b[33mWARN'), 'warnings are yellow on a terminal');
  const noColor = everyLevel('debug', { NO_COLOR: '1' }, true);
  assert.ok(!noColor.text().includes('\x1b['), 'NO_COLOR turns colour off');
  const emptyNoColor = everyLevel('debug', { NO_COLOR: '' }, true);
  assert.ok(emptyNoColor.text().includes('\x1b['), 'an empty NO_COLOR does not (no-color.org)');
});

test("a worker's and a master's log, the core's lines included, go to stdout without escape codes when redirected", { timeout: 90000 }, async (t) => {
  const env = { ...testEnv(t), LOG_LEVEL: 'debug' };
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.copyFileSync(path.join(FIXTURES, 'task.js'), path.join(cwd, 'src', 'task.js'));
  const worker = run(t, path.join(FIXTURES, 'worker.js'), { cwd: tmpdir(t), env });
  const master = run(t, path.join(FIXTURES, 'master.js'), { cwd, env: { ...env, QX_JOBS: '3', QX_WORKERS: '1' } });
  await master.next((l) => l.closed, 60000);
  const texts = (p) => p.lines.filter((l) => l.text !== undefined).map((l) => l.text);
  for (const [who, p] of [['worker', worker], ['master', master]]) {
    const lines = texts(p);
    assert.ok(lines.some((l) => /^\d\d-\d\d \d\d:\d\d:\d\d \[INFO\] > /.test(l)), `${who}: queue-xec's lines on stdout:\n${lines.join('\n')}`);
    // The core's lines carry key=value fields (the JS layer's never do).
    assert.ok(lines.some((l) => /^\d\d-\d\d \d\d:\d\d:\d\d \[(INFO|DEBUG)\] > .*\w=\S/.test(l)), `${who}: the core's lines on stdout too, in the same format:\n${lines.join('\n')}`);
    assert.ok(!lines.join('\n').includes('\x1b['), `${who}: no escape codes on stdout`);
    assert.ok(!p.stderr().includes('\x1b['), `${who}: none on stderr`);
  }
  worker.child.kill('SIGTERM');
});

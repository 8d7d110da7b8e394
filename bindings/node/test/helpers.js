'use strict';
// Helpers for the node:test suites: temp dirs, tokens, and child processes that speak JSON lines.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..');
const FIXTURES = path.join(__dirname, 'fixtures');
const MASTER_PKG = path.join(ROOT, 'packages', 'queue-xec-master');
const WORKER_PKG = path.join(ROOT, 'packages', 'queue-xec-worker');

function tmpdir(t, prefix = 'qx-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (t) t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function tokens() {
  return {
    token: `room${crypto.randomBytes(12).toString('hex')}`,
    transferEncryptToken: crypto.randomBytes(24).toString('hex'),
  };
}

/** Environment of a test's processes: its own room directory and tokens, nothing inherited that matters. */
function testEnv(t, extra = {}) {
  const roomDir = tmpdir(t, 'qx-rooms-');
  const env = { ...process.env, ...tokens(), QUEUEXEC_ROOM_DIR: roomDir, QUEUEXEC_MDNS: '0', ...extra };
  delete env.LOG_LEVEL;
  delete env.getBatch;
  delete env.batchSize;
  return env;
}

/**
 * Spawns `node script` and reads its stdout as JSON lines. Returns {child, lines, next(pred, ms), exited}.
 * Killed (by its PID) when the test ends.
 */
function run(t, script, { cwd, env, args = [] } = {}) {
  const child = spawn(process.execPath, [script, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = [];
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      msg = { text: line };
    }
    lines.push(msg);
    for (const w of waiters.slice()) w.check();
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  if (t) {
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  }
  /** Resolves with the first line (from index `from`) matching `pred`. */
  function next(pred, ms = 30000, from = 0) {
    return new Promise((resolve, reject) => {
      const w = {
        check() {
          const found = lines.slice(from).find(pred);
          if (found) {
            clearTimeout(w.timer);
            waiters.splice(waiters.indexOf(w), 1);
            resolve(found);
          }
        },
      };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`${path.basename(script)}: no matching line within ${ms} ms; stderr:\n${stderr}\nstdout:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`));
      }, ms);
      waiters.push(w);
      w.check();
    });
  }
  return { child, lines, next, exited, stderr: () => stderr };
}

module.exports = { ROOT, FIXTURES, MASTER_PKG, WORKER_PKG, tmpdir, tokens, testEnv, run };

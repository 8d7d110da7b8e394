'use strict';
// Where a Node worker's task.js runs: in this process, loaded with require(), so any npm
// package works (native ones too). The core calls `load` after installing the master's assets
// and `run` for each job; both always resolve to {result} or {error} and never throw, so a
// task that throws or rejects becomes a job error and the worker goes on.
//
// Dependencies are looked for on disk, never with an in-process require.resolve: Node caches
// a failed lookup (the missing package.json of node_modules/<name>), so a package installed
// after such a probe stays unloadable until the process restarts. That is how queue-xec's
// examples failed on their first run in an app whose node_modules/ already existed.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { decodeJob } = require('./payload');

class TaskHost {
  constructor(log) {
    this.log = log;
    this.task = null;
    this.loadError = 'no task.js has been received from the master yet';
    this.loadedFiles = [];
    // Packages a require() of this process failed to find: Node remembers the miss.
    this.missedModules = new Set();
    // The abort controllers of running jobs, by job id (an id may run more than once).
    this.controllers = new Map();
  }

  /**
   * A call to the master through the worker's native handle (`link`): `lookup`, `setLookup`
   * or `message`. Resolves with the master's answer (parsed JSON), rejects with its error.
   */
  async call(op, a, b, c) {
    if (!this.link) throw new Error('the worker has not started yet: no master to ask');
    const key = b === undefined || b === null ? undefined : String(b);
    const json = c === undefined ? undefined : JSON.stringify(c);
    const answer = await this.link.call(op, String(a), key, json === undefined ? (c === undefined ? undefined : 'null') : json);
    if (!answer.ok) throw new Error(answer.value);
    const value = JSON.parse(answer.value);
    return op === 'lookup' && value === null ? undefined : value;
  }

  /** Adds `delta` to the worker's custom metric `name` (reported in the master's 'stats'). */
  metric(name, delta = 1) {
    if (!this.link) return false;
    return this.link.metric(String(name), Number(delta));
  }

  /**
   * A batch task (Distributo's `processTasks(tasks)`): the jobs that start together (up to the
   * worker's concurrency) go to one call, which returns their results in the same order.
   */
  batched(input, context) {
    return new Promise((resolve, reject) => {
      if (!this.batch) {
        this.batch = [];
        setImmediate(() => this.flushBatch());
      }
      this.batch.push({ input, context, resolve, reject });
    });
  }

  async flushBatch() {
    const batch = this.batch || [];
    this.batch = null;
    try {
      const results = await this.task.processTasks(
        batch.map((b) => b.input),
        batch.map((b) => b.context),
      );
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new Error(
          `processTasks must return an array with one result per job (${batch.length}), got ${Array.isArray(results) ? `${results.length} results` : typeof results}`,
        );
      }
      batch.forEach((b, i) => (results[i] instanceof Error ? b.reject(results[i]) : b.resolve(results[i])));
    } catch (error) {
      for (const b of batch) b.reject(error);
    }
  }

  /** The master cancelled job `id`: the signal of each of its runs here aborts. */
  cancel(id) {
    const running = this.controllers.get(id);
    if (!running) return 0;
    for (const controller of running) controller.abort(new Error('the job was cancelled by the master'));
    return running.size;
  }

  /** The master's assets were installed in `info.workplace`: install dependencies, (re)load task.js. */
  async load(info) {
    try {
      const files = info.files.map((f) => realpath(path.resolve(info.workplace, f.workerPath)));
      // The core picks the entry (task.js), as every other worker does.
      const entry = info.taskEntry ? { workerPath: info.taskEntry } : null;
      if (!entry) {
        this.task = null;
        this.loadError = "the master's assets have no file named task.js, the entry point of a job";
        return { error: this.loadError };
      }
      const taskPath = path.resolve(info.workplace, entry.workerPath);
      await installDependencies(info.dependencies, path.dirname(taskPath), info.workplace, this.log);
      // Forget every asset file (not only task.js), so helpers it requires are fresh too.
      for (const file of new Set([...this.loadedFiles, ...files])) delete require.cache[file];
      this.loadedFiles = files;
      let exported;
      try {
        exported = require(taskPath);
      } catch (error) {
        throw this.explainRequireError(error, path.dirname(taskPath));
      }
      this.task = instantiate(exported, taskPath);
      this.loadError = null;
      this.log.info(`loaded ${taskPath} (bundle ${info.bundle.slice(0, 12)})`);
      return {};
    } catch (error) {
      this.task = null;
      this.loadError = `task.js could not be loaded: ${message(error)}`;
      return { error: this.loadError };
    }
  }

  /**
   * A require() that failed. A package that is missing is remembered, because Node caches the
   * miss; when it is on disk by now (installed by hand, or announced later) only a restart of
   * this process can load it, and the message says so.
   */
  explainRequireError(error, fromDir) {
    const missing = error && error.code === 'MODULE_NOT_FOUND' ? /Cannot find module '([^']+)'/.exec(error.message) : null;
    if (!missing || missing[1].startsWith('.') || path.isAbsolute(missing[1])) return error;
    const name = bareName(missing[1]);
    if (this.missedModules.has(name) && installedOnDisk(name, fromDir)) {
      return new Error(
        `${error.message.split('\n')[0]}: it is installed now, but this process looked for it before and Node ` +
          'keeps that miss; restart the worker (and add it to the master\'s execAssets.dependencies)',
      );
    }
    this.missedModules.add(name);
    return new Error(
      `${error.message.split('\n')[0]}: add ${JSON.stringify(name)} to the master's execAssets.dependencies ` +
        'so workers install it before loading task.js',
    );
  }

  /**
   * Runs one job as queue-xec did: `task.run(payload)` with the payload as pushed (a JSON round
   * trip), plus a second argument {id, attempt, taskType, signal}. The result is what the task
   * returned, as JSON.
   */
  async run(job) {
    const controller = new AbortController();
    let running = this.controllers.get(job.id);
    if (!running) this.controllers.set(job.id, (running = new Set()));
    running.add(controller);
    let timer = null;
    if (job.timeoutMs) {
      timer = setTimeout(() => controller.abort(new Error('the job timed out')), job.timeoutMs);
      timer.unref();
    }
    try {
      if (!this.task) return { error: this.loadError || 'no task.js is loaded' };
      const input = decodeJob(job);
      const context = {
        id: job.id,
        attempt: job.attempt,
        taskType: job.taskType ?? undefined,
        // Made when the task first asks: an AbortSignal costs about 3.5 µs to make (Node 20),
        // more than the rest of a no-op job's way through this host. Aborted before it is
        // asked for, it is made already aborted, with the reason.
        get signal() {
          return controller.signal;
        },
        // Lookups held by the master, and messages to it (okanjo-conductor's), as promises.
        lookup: (name, key) => this.call('lookup', name, key),
        setLookup: (name, key, value) => this.call('setLookup', name, key, value),
        request: (cmd, data) => this.call('message', cmd, undefined, data),
        // okanjo-conductor's worker stats: a custom counter in the master's 'stats'.
        metric: (name, delta = 1) => this.metric(name, delta),
      };
      this.log.debug(`working on ${job.id}`);
      const result = typeof this.task.run === 'function' ? await this.task.run(input, context) : await this.batched(input, context);
      const json = JSON.stringify(result);
      return { result: json === undefined ? 'null' : json };
    } catch (error) {
      this.log.warn(`job ${job.id} failed: ${message(error)}`);
      return { error: message(error) };
    } finally {
      if (timer) clearTimeout(timer);
      running.delete(controller);
      if (running.size === 0 && this.controllers.get(job.id) === running) this.controllers.delete(job.id);
    }
  }
}

function realpath(file) {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}

function instantiate(exported, taskPath) {
  const Task = exported && exported.__esModule && exported.default ? exported.default : exported;
  if (typeof Task === 'function') {
    const task = new Task();
    if (typeof task.run !== 'function' && typeof task.processTasks !== 'function') {
      throw new Error(`${taskPath} exports a class without a run(job) method (or processTasks(jobs))`);
    }
    return task;
  }
  if (Task && (typeof Task.run === 'function' || typeof Task.processTasks === 'function')) return Task;
  throw new Error(`${taskPath} must export a class with a run(job) method, or processTasks(jobs) (module.exports = Task)`);
}

function message(error) {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

/** The package a request names: `moment/locale/de` -> `moment`, `@s/p/x` -> `@s/p`. */
function bareName(request) {
  const parts = request.split('/');
  return request.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/**
 * The package name a dependency spec installs: `big.js@6` -> `big.js`, `@scope/pkg@1` ->
 * `@scope/pkg`, `dep@file:../dep.tgz` -> `dep`, a local folder (`./lib`, `/abs/lib`,
 * `file:../lib`) -> the name in its package.json. `null` when it cannot be told (then it is
 * installed).
 */
function packageName(spec, cwd = process.cwd()) {
  const local = spec.startsWith('file:') ? spec.slice(5) : spec;
  if (local.startsWith('.') || path.isAbsolute(local)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(path.resolve(cwd, local), 'package.json'), 'utf8')).name || null;
    } catch {
      return null;
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec) || spec.startsWith('git+') || spec.startsWith('github:')) return null;
  if (spec.startsWith('@')) {
    const at = spec.indexOf('@', 1);
    return at === -1 ? spec : spec.slice(0, at);
  }
  const at = spec.indexOf('@');
  return at <= 0 ? spec : spec.slice(0, at);
}

/**
 * Whether `name` is installed where Node's resolution from `fromDir` would find it: a
 * node_modules/<name>/package.json in `fromDir` or a folder above it. Read from disk only, so
 * none of Node's module caches learn about a miss.
 */
function installedOnDisk(name, fromDir) {
  let dir = path.resolve(fromDir);
  for (;;) {
    if (path.basename(dir) !== 'node_modules' && fs.existsSync(path.join(dir, 'node_modules', name, 'package.json'))) {
      return true;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

/**
 * The package manager queue-xec's installer (lmify) would pick in `cwd`: yarn when the folder
 * has a yarn.lock, npm otherwise. Returns [command, args before the packages].
 */
function packageManager(cwd) {
  const windows = process.platform === 'win32';
  if (fs.existsSync(path.join(cwd, 'yarn.lock'))) {
    return { name: 'yarn', command: windows ? 'yarn.cmd' : 'yarn', args: ['add', '--silent', '--non-interactive'] };
  }
  return { name: 'npm', command: windows ? 'npm.cmd' : 'npm', args: ['install', '--no-audit', '--no-fund', '--no-progress'] };
}

/**
 * Installs in `cwd`, with yarn or npm as queue-xec did, the announced dependencies that are not
 * on disk where the task (in `fromDir`) will look for them.
 */
async function installDependencies(dependencies, fromDir, cwd, log) {
  const missing = (dependencies || []).map(String).filter((spec) => {
    const name = packageName(spec, cwd);
    return name === null || !installedOnDisk(name, fromDir);
  });
  if (missing.length === 0) return;
  const pm = packageManager(cwd);
  log.info(`installing dependencies with ${pm.name}: ${missing.join(' ')}`);
  await new Promise((resolve, reject) => {
    execFile(
      pm.command,
      [...pm.args, ...missing],
      { cwd, shell: process.platform === 'win32', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const why = error.code === 'ENOENT' ? `${pm.command} is not installed (or not on PATH)` : String(stderr || error.message).trim();
          reject(new Error(`${pm.name} ${pm.args[0]} ${missing.join(' ')} failed in ${cwd}: ${why}`));
        } else {
          log.debug(String(stdout).trim());
          resolve();
        }
      },
    );
  });
}

module.exports = { TaskHost, packageName, packageManager, installedOnDisk, installDependencies };

'use strict';
// Where a Node worker's task.js runs: in this process, loaded with require(), so any npm
// package works (native ones too). The core calls `load` after installing the master's assets
// and `run` for each job; both always resolve to {result} or {error} and never throw, so a
// task that throws or rejects becomes a job error and the worker goes on.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

class TaskHost {
  constructor(log) {
    this.log = log;
    this.task = null;
    this.loadError = 'no task.js has been received from the master yet';
    this.loadedFiles = [];
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
      const exported = require(taskPath);
      this.task = instantiate(exported, taskPath);
      this.loadError = null;
      this.log.info(`loaded ${taskPath} (bundle ${info.bundle.slice(0, 12)})`);
      return {};
    } catch (error) {
      this.task = null;
      this.loadError = `task.js could not be loaded: ${message(error)}`;
      this.log.error(this.loadError);
      return { error: this.loadError };
    }
  }

  /**
   * Runs one job: `task.run({id, data}, {id, attempt, taskType, signal})`, as the sandboxed
   * runtime does (`data` is the job's JSON data parsed; see toJob in master.js).
   */
  async run(job) {
    const controller = new AbortController();
    let timer = null;
    if (job.timeoutMs) {
      timer = setTimeout(() => controller.abort(new Error('the job timed out')), job.timeoutMs);
      timer.unref();
    }
    try {
      if (!this.task) return { error: this.loadError || 'no task.js is loaded' };
      const input = { id: job.id, data: parseData(job.data) };
      const context = { id: job.id, attempt: job.attempt, taskType: job.taskType ?? undefined, signal: controller.signal };
      this.log.debug(`working on ${job.id}`);
      const result = await this.task.run(input, context);
      const json = JSON.stringify(result);
      return { result: json === undefined ? 'null' : json };
    } catch (error) {
      this.log.warn(`job ${job.id} failed: ${message(error)}`);
      return { error: message(error) };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}

function parseData(data) {
  try {
    return JSON.parse(data);
  } catch {
    return data;
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
    if (typeof task.run !== 'function') throw new Error(`${taskPath} exports a class without a run(job) method`);
    return task;
  }
  if (Task && typeof Task.run === 'function') return Task;
  throw new Error(`${taskPath} must export a class with a run(job) method (module.exports = Task)`);
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

/**
 * The package name a dependency spec installs: `big.js@6` -> `big.js`, `@scope/pkg@1` ->
 * `@scope/pkg`, a local folder (`./lib`, `/abs/lib`, `file:../lib`) -> the name in its
 * package.json. `null` when it cannot be told (then it is installed).
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
  if (spec.startsWith('@')) {
    const at = spec.indexOf('@', 1);
    return at === -1 ? spec : spec.slice(0, at);
  }
  const at = spec.indexOf('@');
  return at <= 0 ? spec : spec.slice(0, at);
}

function resolves(name, fromDir) {
  for (const request of [name, `${name}/package.json`]) {
    try {
      require.resolve(request, { paths: [fromDir] });
      return true;
    } catch {
      // try the next form
    }
  }
  return false;
}

/** Installs with npm, in `cwd`, the announced dependencies that do not resolve from `fromDir`. */
async function installDependencies(dependencies, fromDir, cwd, log) {
  const missing = (dependencies || []).filter((spec) => {
    const name = packageName(spec, cwd);
    return name === null || !resolves(name, fromDir);
  });
  if (missing.length === 0) return;
  log.info(`installing dependencies: ${missing.join(' ')}`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  await new Promise((resolve, reject) => {
    execFile(
      npm,
      ['install', '--no-audit', '--no-fund', '--no-progress', ...missing],
      { cwd, shell: process.platform === 'win32', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`npm install ${missing.join(' ')} failed in ${cwd}: ${String(stderr || error.message).trim()}`));
        } else {
          log.debug(stdout);
          resolve();
        }
      },
    );
  });
}

module.exports = { TaskHost, packageName, installDependencies };

'use strict';
// queue-xec-master's Master on queuexec's core. Same constructor, same pushNewJob, same
// onResults shape; plus events, stats(), close(), pushNewJobs() and per-job options.

const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');

const native = require('./native');
const { loadDotenv, resolveTokens, Logger } = require('./env');
const { ConfigError, PayloadError, JobError, TaskLoadError, fromNative } = require('./errors');
const { encodePayload } = require('./payload');
const { LocalPool, localWorkerCount } = require('./local-pool');

loadDotenv();

/** The task.js workers get when execAssets.files name none: the app's own, as in queue-xec. */
const DEFAULT_TASK = { masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' };

/** The core's defaults (retries, lease, watching, the task entry's name, ...). */
const DEFAULTS = native.defaults();

/** Jobs handed to the core in one call at most. */
const PUSH_CHUNK = 8192;

/** Jobs a producer's getTasks is asked for at a time (its `batchSize`). */
const DEFAULT_BATCH = 100;

/** Results pulled from the core per wake-up at most. */
const EVENT_BATCH = 1024;

class Master extends EventEmitter {
  /**
   * @param {object} [options] see index.d.ts
   */
  constructor({
    token = null,
    execAssets = [],
    onResults = () => {},
    loglevel,
    transferEncryptToken = null,
    storePath,
    listen,
    defaultRetries,
    leaseTimeout,
    retryBackoff,
    maxWorkers,
    watchAssets,
    mdns,
    bootstrap,
    upnp,
    idempotentIds,
    maxResidentJobs,
    getTasks,
    handleResults,
    batchSize,
    lookups = {},
    onWorkerMessage,
    statsInterval,
    localWorkers,
    exitWhenDrained = false,
    workerOptions,
    dashboard,
    dashboardToken,
  } = {}) {
    super();
    this.log = new Logger(loglevel || process.env.LOG_LEVEL, 'queue-xec-master');
    native.setLogLevel(this.log.coreLevel, -new Date().getTimezoneOffset());
    const tokens = resolveTokens(token, transferEncryptToken, 'master', native);
    this.token = tokens.token;
    this.onResults = typeof onResults === 'function' ? onResults : () => {};
    this.execAssets = resolveAssets(execAssets, this.log);
    this.storePath = storePath ? path.resolve(process.cwd(), String(storePath)) : null;

    this._native = null;
    this._closed = false;
    this._batch = [];
    this._flushScheduled = false;
    // The jobID of each queued job whose core id (always a string) does not give it back by
    // itself (see plainJobID: a number id, queue-xec's usual kind, comes back as the number
    // and a string id as itself, so neither needs an entry: a million queued jobs cost no
    // memory here). Entered before the push, so a result that overtakes its receipt finds it.
    // Each entry counts the queued jobs under that id (a repeated id is queued again). Lost on
    // a restart: resumed jobs then report plainJobID of their core id. A payload without an
    // id gets a result without a jobID, as in queue-xec (the core marks it `automatic`).
    this._jobIDs = new Map();
    this._pushesInFlight = 0;
    this._producer = newProducer(getTasks, handleResults, batchSize);
    // okanjo-conductor's lookups: plain objects or Maps by name, read and written by workers
    // (ctx.lookup / ctx.setLookup) through this master. Replace or mutate them at any time.
    this.lookups = lookups && typeof lookups === 'object' ? lookups : {};
    // The handler of workers' messages (ctx.request / worker.request): its return value (or
    // resolved promise) is the reply. Given as an option or assigned as a method, as
    // okanjo-conductor's `conductor.onWorkerMessage = function (id, msg) {...}`.
    if (typeof onWorkerMessage === 'function') this.onWorkerMessage = onWorkerMessage;

    const options = {
      token: tokens.token,
      transferToken: tokens.transferEncryptToken,
      storePath: this.storePath || undefined,
      listen: listen === undefined ? undefined : [].concat(listen),
      assets: this.execAssets.files.map((f) => ({
        name: f.name,
        masterPath: f.resolvedMasterPath,
        workerPath: f.resolvedWorkerPath,
      })),
      assetBaseDir: process.cwd(),
      dependencies: this.execAssets.dependencies,
      defaultRetries: defaultRetries === undefined ? undefined : Number(defaultRetries),
      leaseTtlMs: leaseTimeout === undefined ? undefined : Number(leaseTimeout),
      retryBackoffMs: retryBackoff === undefined ? undefined : Number(retryBackoff),
      maxWorkers: maxWorkers === undefined ? undefined : Number(maxWorkers),
      mdns: mdns === undefined ? undefined : Boolean(mdns),
      // Relays to meet through across NATs; default QUEUEXEC_BOOTSTRAP (also from .env).
      bootstrap: bootstrap === undefined ? undefined : [].concat(bootstrap).map(String),
      upnp: upnp === undefined ? undefined : Boolean(upnp),
      // The core watches the asset files (size and mtime every second, then hashes) and
      // reloads them when they change, the same for the CLI and Python.
      watchAssets: watchAssets === undefined ? undefined : Boolean(watchAssets),
      // Off by default: a repeated id is queued again, as in queue-xec (the receipt says
      // `repeated`); on, it is not queued again (the receipt says `duplicate`).
      idempotentIds: idempotentIds === undefined ? undefined : Boolean(idempotentIds),
      statsIntervalMs: statsInterval === undefined ? undefined : Number(statsInterval),
      // With a store file: the most ready jobs kept in memory; the rest wait in the store.
      maxResidentJobs: maxResidentJobs === undefined ? undefined : Number(maxResidentJobs),
      // The dashboard (web page, JSON API, /metrics): loopback unless a token is given.
      dashboard: dashboard === undefined || dashboard === null ? undefined : String(dashboard),
      dashboardToken: dashboardToken === undefined || dashboardToken === null ? undefined : String(dashboardToken),
    };
    /** The last 'stats' report (okanjo-conductor's `lastStats`). */
    this.lastStats = null;
    const local = localWorkerCount(localWorkers);
    this._pool = local
      ? new LocalPool(this, {
          count: local,
          token: tokens.token,
          transferEncryptToken: tokens.transferEncryptToken,
          exitWhenDrained,
          worker: { loglevel, ...(workerOptions || {}) },
        })
      : null;

    /** Resolves with this master once it listens; rejects with why it could not start. */
    this.ready = native.startMaster(options).then(
      (handle) => {
        this._native = handle;
        this.peerId = handle.peerId;
        this.dashboardUrl = handle.dashboardUrl || null;
        this.log.info('master listening on', handle.listenAddrs().join(' '));
        if (this.dashboardUrl) this.log.info('dashboard on', this.dashboardUrl);
        this._pump(handle);
        if (this._pool) this._pool.start(handle.listenAddrs()[0]);
        if (this._producer) setImmediate(() => this._produce());
        if (this._closed) return handle.close().then(() => this);
        return this;
      },
      (error) => {
        const classed = fromNative(error);
        this._startError = classed;
        if (this.listenerCount('error') > 0) this.emit('error', classed);
        else console.error(`[queue-xec-master] could not start: ${classed.message}`);
        throw classed;
      },
    );
    // The failure is reported above; an unobserved `ready` must not also crash the process.
    this.ready.catch(() => {});
  }

  /**
   * Queues one job. Resolves once the job is durable in the master's store; rejects with
   * `payload is undefined` when called without a payload.
   * @param {*} payload an object (its `id`, if any, becomes the jobID), array, string or number
   * @param {object} [options] priority, retries, timeout (ms), delay (ms), taskType, id
   */
  pushNewJob(payload, options) {
    if (typeof payload === 'undefined') {
      this.log.warn('pushNewJob:', 'payload is undefined');
      return Promise.reject(new PayloadError('payload is undefined', { code: 'ERR_QUEUEXEC_PAYLOAD' }));
    }
    let job;
    try {
      job = toJob(payload, options);
    } catch (error) {
      return Promise.reject(error);
    }
    this.log.debug('pushNewJob payload:', payload);
    return new Promise((resolve, reject) => {
      this._batch.push({ job, resolve, reject });
      if (!this._flushScheduled) {
        this._flushScheduled = true;
        queueMicrotask(() => this._flush());
      }
    });
  }

  /**
   * Queues many jobs in one group; resolves with their receipts once all are durable. All are
   * queued, or none.
   * @param {Array} payloads
   * @param {object} [options] applied to every job
   */
  async pushNewJobs(payloads, options) {
    if (!Array.isArray(payloads)) {
      throw new PayloadError('pushNewJobs takes an array of payloads', { code: 'ERR_QUEUEXEC_PAYLOAD' });
    }
    const jobs = payloads.map((payload, index) => {
      if (typeof payload === 'undefined') {
        throw new PayloadError(`payload ${index} is undefined`, { code: 'ERR_QUEUEXEC_PAYLOAD' });
      }
      return toJob(payload, options);
    });
    return this._pushJobs(jobs, null);
  }

  /** Pushes built jobs in chunks; `produced` (the producer's ids) learns each job's core id. */
  async _pushJobs(jobs, produced) {
    const handle = await this._handle();
    const receipts = [];
    for (let i = 0; i < jobs.length; i += PUSH_CHUNK) {
      const chunk = jobs.slice(i, i + PUSH_CHUNK);
      this._pushesInFlight += 1;
      chunk.forEach((job) => this._expect(job));
      // A job with an id is entered before its push, so its result (which can overtake the
      // receipt) is counted; a `job-N` result waits for the receipts (see _dispatchResult).
      if (produced) chunk.forEach((job) => job.native.id != null && countUp(produced, job.native.id));
      try {
        const got = await pushNatives(handle, chunk.map((j) => j.native)).catch((error) => {
          chunk.forEach((job) => this._unexpect(job));
          if (produced) chunk.forEach((job) => job.native.id != null && countDown(produced, job.native.id));
          throw fromNative(error);
        });
        got.forEach((receipt, k) => {
          this._remember(chunk[k], receipt);
          if (!produced) return;
          if (receipt.duplicate) countDown(produced, chunk[k].native.id);
          else if (chunk[k].native.id == null) countUp(produced, receipt.id);
        });
        receipts.push(...got);
      } finally {
        this._pushSettled();
      }
    }
    return receipts;
  }

  /** Counts: queued, delayed, running, done, dead, retried, workers (the core's names, as in Python). */
  async stats() {
    const handle = await this._handle();
    return handle.stats().catch((error) => {
      throw fromNative(error);
    });
  }

  /** The lookup `name` (an object or a Map), or undefined. */
  getLookup(name) {
    return this.lookups[name];
  }

  /** The value under `key` in lookup `name` (an object or a Map); undefined when absent. */
  getLookupValue(name, key) {
    const lookup = this.lookups[name];
    if (lookup === undefined || lookup === null) return undefined;
    if (lookup instanceof Map) {
      if (lookup.has(key)) return lookup.get(key);
      const n = Number(key);
      return typeof key === 'string' && key.trim() !== '' && lookup.has(n) ? lookup.get(n) : undefined;
    }
    return Object.prototype.hasOwnProperty.call(lookup, key) ? lookup[key] : undefined;
  }

  /** Sets `key` to `value` in lookup `name` (created as an object when missing). */
  setLookupValue(name, key, value) {
    let lookup = this.lookups[name];
    if (lookup === undefined || lookup === null) lookup = this.lookups[name] = {};
    if (lookup instanceof Map) lookup.set(key, value);
    else lookup[key] = value;
  }

  /**
   * Sends `{cmd, data}` to the worker with this id (its peer id, `worker.id` in results); the
   * worker's 'message' event (and `onMasterMessage`) gets it. Resolves with true when it was
   * sent (false: no such worker connected).
   */
  async sendMessageToWorker(workerId, cmd, data) {
    if (typeof workerId !== 'string' || workerId === '') {
      throw new ConfigError(`sendMessageToWorker takes a worker's id (a string), got ${JSON.stringify(workerId)}`, { code: 'ERR_QUEUEXEC_CONFIG' });
    }
    return (await this._send(workerId, cmd, data)) > 0;
  }

  /** Sends `{cmd, data}` to every worker; resolves with how many got it. */
  async broadcast(cmd, data) {
    return this._send(null, cmd, data);
  }

  /** okanjo-conductor's name for `broadcast`. */
  broadcastMessageToWorkers(cmd, data) {
    return this.broadcast(cmd, data);
  }

  /**
   * Stops every worker: each is told to leave, and this master hands out no more jobs; jobs
   * they had not finished stay queued (and in the store). Resolves with how many were told.
   */
  async abort() {
    const handle = await this._handle();
    return handle.abort().catch((error) => {
      throw fromNative(error);
    });
  }

  async _send(workerId, cmd, data) {
    const json = JSON.stringify(data === undefined ? null : data);
    const handle = await this._handle();
    return handle.sendMessage(workerId, String(cmd), json).catch((error) => {
      throw fromNative(error);
    });
  }

  /**
   * okanjo-conductor's 'stats': `{raw: {<workerId>: {name, last, diff, timeSpan}}, agg: {last,
   * diff}, avgTimeSpan}`; counters are jobsDone, jobsFailed, busyMs and the tasks' ctx.metric.
   */
  _emitStats(json) {
    let report;
    try {
      report = JSON.parse(json);
    } catch {
      return;
    }
    this.lastStats = report;
    this._emitSafely('stats', report);
  }

  /** Emits a 'stats' report now when workers reported since the last one (also at 'end'). */
  flushStats() {
    const json = this._native ? this._native.statsReport() : null;
    if (json) this._emitStats(json);
    return this.lastStats;
  }

  /** A worker's call: a lookup, a change of one, or a message for onWorkerMessage. */
  async _answerCall(event) {
    const handle = this._native;
    let outcome;
    try {
      let value;
      if (event.op === 'lookup') {
        value = this.getLookupValue(event.name, event.key);
      } else if (event.op === 'setLookup') {
        this.setLookupValue(event.name, event.key, JSON.parse(event.value));
        value = null;
      } else if (event.op === 'message') {
        if (typeof this.onWorkerMessage !== 'function') {
          throw new Error(`the master has no onWorkerMessage handler for the message ${JSON.stringify(event.cmd)}`);
        }
        const msg = { cmd: event.cmd, data: JSON.parse(event.data) };
        value = await this.onWorkerMessage(event.workerId, msg);
      } else {
        throw new Error(`this master does not know the call ${JSON.stringify(event.op)}`);
      }
      const json = JSON.stringify(value === undefined ? null : value);
      outcome = [true, json === undefined ? 'null' : json];
    } catch (error) {
      outcome = [false, error && error.message ? error.message : String(error)];
    }
    if (handle) handle.answer(event.callId, outcome[0], outcome[1]);
  }

  /**
   * Cancels the job with this id (its jobID, or its receipt's id): queued, delayed or running
   * (the worker's task sees its `signal` abort). Its result is the error `the job was cancelled
   * (cancel() on the master)`. Resolves with how many jobs were cancelled.
   */
  async cancel(jobId) {
    if (jobId === undefined || jobId === null || jobId === '') {
      throw new PayloadError('cancel takes the id of a job (its jobID or its receipt id)', { code: 'ERR_QUEUEXEC_PAYLOAD' });
    }
    await this._flush();
    const handle = await this._handle();
    const id = typeof jobId === 'object' ? JSON.stringify(jobId) : String(jobId);
    return handle.cancel(id).catch((error) => {
      throw fromNative(error);
    });
  }

  /** Reads the asset files again; resolves true when they changed (workers then fetch them). */
  async reloadAssets() {
    const handle = await this._handle();
    return handle.reloadAssets().catch((error) => {
      throw fromNative(error);
    });
  }

  /** The pids of the local worker processes (`localWorkers`), by worker id. */
  localWorkerPids() {
    return this._pool ? this._pool.pids() : {};
  }

  /** Addresses workers on other machines can be given (`master` option of the worker). */
  async listenAddrs() {
    const handle = await this._handle();
    return handle.listenAddrs();
  }

  /**
   * Stops the master: pending pushes are settled, workers disconnected, the store flushed and
   * closed. Results that arrived before are still delivered. Safe to call twice.
   */
  async close() {
    if (this._closing) return this._closing;
    this._closed = true;
    this._closing = (async () => {
      if (this._pool) await this._pool.close();
      await this._flush();
      let handle;
      try {
        handle = await this._handle();
      } catch {
        return;
      }
      await handle.close().catch((error) => {
        throw fromNative(error);
      });
      await this._pumpDone;
    })();
    return this._closing;
  }

  async _handle() {
    if (this._native) return this._native;
    return this.ready.then(() => this._native);
  }

  async _flush() {
    this._flushScheduled = false;
    const batch = this._batch;
    if (batch.length === 0) return;
    this._batch = [];
    let handle;
    try {
      if (this._closed && !this._native) throw this._startError || new Error('the master is closed');
      handle = await this._handle();
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    for (let i = 0; i < batch.length; i += PUSH_CHUNK) {
      const chunk = batch.slice(i, i + PUSH_CHUNK);
      this._pushesInFlight += 1;
      chunk.forEach((item) => this._expect(item.job));
      try {
        const receipts = await pushNatives(handle, chunk.map((item) => item.job.native));
        chunk.forEach((item, k) => {
          // A repeated (or, with idempotentIds, duplicate) id is logged from the core's
          // 'warning' event, one line per push.
          this._remember(item.job, receipts[k]);
          item.resolve(receipts[k]);
        });
      } catch (error) {
        const classed = fromNative(error);
        for (const item of chunk) {
          this._unexpect(item.job);
          item.reject(classed);
        }
      } finally {
        this._pushSettled();
      }
    }
  }

  /** A push's receipts are in: results that waited for them go out, in arrival order. */
  _pushSettled() {
    this._pushesInFlight -= 1;
  }

  /** A job with an id: its jobID is known before its push, so its result never waits. */
  _expect(job) {
    const id = job.native.id;
    if (id === undefined || id === null || plainJobID(id) === job.jobID) return;
    const known = this._jobIDs.get(id);
    this._jobIDs.set(id, { jobID: job.jobID, queued: known ? known.queued + 1 : 1 });
  }

  /** Undoes `_expect` for a job that was not queued (a failed push, or a duplicate id). */
  _unexpect(job) {
    const id = job.native.id;
    if (id === undefined || id === null || plainJobID(id) === job.jobID) return;
    const known = this._jobIDs.get(id);
    if (!known) return;
    if (known.queued > 1) known.queued -= 1;
    else this._jobIDs.delete(id);
  }

  /** A receipt is in: a duplicate (idempotent ids) was not queued. */
  _remember(job, receipt) {
    if (receipt.duplicate) this._unexpect(job);
  }

  /** Delivers a result (its jobID needs no receipt: see _jobIDs). */
  _dispatchResult(raw) {
    this._deliver(raw);
  }

  _pump(handle) {
    this._pumpDone = (async () => {
      for (;;) {
        let events;
        try {
          // One JSON text per batch: V8's parser builds the objects far faster than the
          // addon could property by property. A long result's text rides beside it.
          const batch = await handle.nextEvents(EVENT_BATCH);
          events = JSON.parse(batch.json);
          if (batch.texts.length > 0) {
            for (const event of events) {
              if (event.kind === 'result' && event.result.dataText !== undefined) event.result.dataText = batch.texts[event.result.dataText];
            }
          }
        } catch (error) {
          this._report(fromNative(error));
          return;
        }
        if (events.length === 0) return;
        for (const event of events) this._dispatch(event);
      }
    })();
  }

  _dispatch(event) {
    switch (event.kind) {
      case 'result':
        this._dispatchResult(event.result);
        break;
      case 'workerJoined':
      case 'workerLeft': {
        const worker = { id: event.workerId, name: event.workerName };
        // The core logs it (same format, same stdout).
        this._emitSafely(event.kind, worker);
        break;
      }
      case 'drained':
        this._emitSafely('drained');
        break;
      case 'call':
        this._answerCall(event);
        break;
      case 'stats':
        this._emitStats(event.report);
        break;
      case 'warning':
        // The core's warnings (a repeated job id, results not stored, a quarantined worker, a
        // dependency bundle that could not be built) show at the default level too.
        this.log.notice(event.message);
        this._emitSafely('warning', event.message);
        break;
      case 'taskLoadFailed': {
        // A worker whose task cannot load gave its jobs back unrun (no attempt used) and takes
        // none until the assets change: an 'error' event naming it (logged when nobody listens).
        const error = new TaskLoadError(
          `worker ${event.workerName} (${event.workerId}) cannot load the task: ${event.reason}; ` +
            'it takes no jobs until the assets change (its jobs went back to the queue)',
          { code: 'ERR_QUEUEXEC_TASK_LOAD' },
        );
        error.worker = { id: event.workerId, name: event.workerName };
        error.reason = event.reason;
        this._report(error);
        break;
      }
      default:
        this.log.debug('event', event);
    }
  }

  /**
   * A job ended: `onResults` gets queue-xec's `{jobID, worker: {id, name}, data}` (no jobID
   * when the payload had no id), or `{jobID, worker, error}` after its last attempt failed. The
   * 'result' event also gets {id, attempts}: the core's job id and the attempts it took.
   */
  _deliver(raw) {
    let jobID = raw.automatic ? undefined : plainJobID(raw.jobId);
    const known = this._jobIDs.get(raw.jobId);
    if (known && !raw.automatic) {
      jobID = known.jobID;
      if (known.queued > 1) known.queued -= 1;
      else this._jobIDs.delete(raw.jobId);
    }
    const worker = { id: raw.workerId, name: raw.workerName };
    const meta = { id: raw.jobId, attempts: raw.attempts };
    const result = jobID === undefined ? {} : { jobID };
    result.worker = worker;
    if (raw.error === undefined || raw.error === null) {
      if (raw.dataText === undefined) {
        result.data = raw.data;
      } else {
        // A long result comes as its JSON text.
        try {
          result.data = JSON.parse(raw.dataText);
        } catch {
          result.data = raw.dataText;
        }
      }
      this._call(this.onResults, result);
      this._emitSafely('result', result, meta);
      this._produced(raw.jobId, result);
    } else {
      result.error = raw.error;
      this.log.warn(`job ${jobID === undefined ? raw.jobId : jobID} failed after ${raw.attempts} attempt(s): ${raw.error}`);
      this._call(this.onResults, result);
      if (this.listenerCount('error') > 0) {
        this._emitSafely('error', new JobError(raw.error, { jobID, worker, attempts: raw.attempts }));
      }
      this._produced(raw.jobId, result);
    }
  }

  /**
   * Pull-based producing (Distributo's getTasks / handleResults): while fewer than two batches
   * of produced jobs wait or run, asks `getTasks(batchSize)` for more (it may be async; an
   * empty array means there is no more). Only a few batches are ever in memory, however many
   * jobs the producer has.
   */
  async _produce() {
    const p = this._producer;
    if (!p || p.pulling || p.exhausted || this._closed) return;
    p.pulling = true;
    try {
      while (!p.exhausted && !this._closed && p.produced - p.finished < 2 * p.batchSize) {
        let tasks;
        try {
          tasks = await p.getTasks(p.batchSize);
        } catch (error) {
          p.exhausted = true;
          this._report(new ConfigError(`getTasks threw: ${error && error.message ? error.message : error}; no more jobs are asked for`, { code: 'ERR_QUEUEXEC_CONFIG', cause: error }));
          break;
        }
        if (tasks === undefined || tasks === null || (Array.isArray(tasks) && tasks.length === 0)) {
          p.exhausted = true;
          break;
        }
        if (!Array.isArray(tasks)) {
          p.exhausted = true;
          this._report(new ConfigError(`getTasks must return an array of payloads (an empty one when there is no more), got ${typeof tasks}`, { code: 'ERR_QUEUEXEC_CONFIG' }));
          break;
        }
        const jobs = [];
        for (const task of tasks) {
          if (task === undefined) continue;
          try {
            jobs.push(toJob(task));
          } catch (error) {
            this._report(error);
          }
        }
        p.produced += jobs.length;
        try {
          await this._pushJobs(jobs, p.ids);
        } catch (error) {
          p.produced -= jobs.length;
          p.exhausted = true;
          this._report(error);
        }
      }
    } finally {
      p.pulling = false;
    }
    this._checkEnd();
  }

  /** A result of a produced job: counted, batched for handleResults, and more pulled. */
  _produced(coreId, result) {
    const p = this._producer;
    if (!p || !countDown(p.ids, coreId)) return;
    p.finished += 1;
    if (p.handleResults) {
      p.results.push(result);
      if (p.results.length >= p.batchSize) this._handBatch();
    }
    if (!p.exhausted) this._produce();
    this._checkEnd();
  }

  /** Hands the results gathered so far to handleResults (in order, one call at a time). */
  _handBatch() {
    const p = this._producer;
    if (p.results.length === 0) return p.handing;
    const batch = p.results;
    p.results = [];
    p.handing = p.handing.then(async () => {
      try {
        await p.handleResults(batch);
      } catch (error) {
        this._listenerFailed(error);
      }
    });
    return p.handing;
  }

  /** 'end': the producer has no more and every produced job has its result (handed over). */
  _checkEnd() {
    const p = this._producer;
    if (!p || p.ended || p.pulling || !p.exhausted || p.finished < p.produced) return;
    p.ended = true;
    this._handBatch().then(() => {
      this.log.info(`producer done: ${p.finished} jobs`);
      this.flushStats();
      this._emitSafely('end', { jobs: p.finished });
    });
  }

  // A throwing listener must not stop result delivery: report it and go on.
  _call(fn, arg) {
    try {
      const out = fn(arg);
      if (out && typeof out.catch === 'function') out.catch((error) => this._listenerFailed(error));
    } catch (error) {
      this._listenerFailed(error);
    }
  }

  _emitSafely(name, ...args) {
    try {
      this.emit(name, ...args);
    } catch (error) {
      this._listenerFailed(error);
    }
  }

  _listenerFailed(error) {
    console.error('[queue-xec-master] a result handler threw:', error);
  }

  _report(error) {
    if (this.listenerCount('error') > 0) this._emitSafely('error', error);
    else this.log.error(error.message);
  }
}

/** The producer's state, or null without getTasks. */
function newProducer(getTasks, handleResults, batchSize) {
  if (getTasks === undefined || getTasks === null) {
    if (handleResults !== undefined && handleResults !== null) {
      throw new ConfigError('handleResults needs getTasks: it receives the results of the jobs getTasks produced', { code: 'ERR_QUEUEXEC_CONFIG' });
    }
    return null;
  }
  if (typeof getTasks !== 'function') {
    throw new ConfigError(`getTasks must be a function (n) => payloads, got ${typeof getTasks}`, { code: 'ERR_QUEUEXEC_CONFIG' });
  }
  if (handleResults !== undefined && handleResults !== null && typeof handleResults !== 'function') {
    throw new ConfigError(`handleResults must be a function (results) => void, got ${typeof handleResults}`, { code: 'ERR_QUEUEXEC_CONFIG' });
  }
  const size = batchSize === undefined ? DEFAULT_BATCH : Number(batchSize);
  if (!Number.isInteger(size) || size < 1) {
    throw new ConfigError(`batchSize must be a whole number of at least 1, got ${JSON.stringify(batchSize)}`, { code: 'ERR_QUEUEXEC_CONFIG' });
  }
  return {
    getTasks,
    handleResults: handleResults || null,
    batchSize: size,
    ids: new Map(),
    produced: 0,
    finished: 0,
    results: [],
    handing: Promise.resolve(),
    pulling: false,
    exhausted: false,
    ended: false,
  };
}

function countUp(map, key) {
  map.set(key, (map.get(key) || 0) + 1);
}

/** Takes one off `key`'s count; false when it had none. */
function countDown(map, key) {
  const n = map.get(key);
  if (!n) return false;
  if (n > 1) map.set(key, n - 1);
  else map.delete(key);
  return true;
}

/**
 * A payload as a core job (see payload.js for how it travels): `native` is the job handed to
 * the core, `jobID` what the result's jobID will be (the payload's own id with its type; none
 * when the payload has none, as in queue-xec). `options.id` sets the job id instead of the
 * payload's; the payload then travels whole, so the task still receives it as pushed.
 */
/**
 * The jobID a result carries when nothing was recorded for its core id: the number, when the
 * id is a number's own text ("42", "-1.5"), else the id itself.
 */
function plainJobID(coreId) {
  const n = Number(coreId);
  return coreId !== '' && Number.isFinite(n) && String(n) === coreId ? n : coreId;
}

/** A job's shape as the addon's push batch numbers it; 4 marks data that is a plain string. */
const SHAPE_KIND = { job: 0, numericId: 1, whole: 2 };
const KIND_STRING_DATA = 4;

/**
 * Pushes core jobs (toJob's `native`: id, data, shape, stringData?, options?) through the addon
 * and resolves with one receipt `{id, duplicate, repeated}` per job. They cross as a few arrays
 * (ids, data, kinds, and the options of the jobs that have any as one JSON text) instead of an
 * object per job, whose properties napi would look up one by one.
 */
async function pushNatives(handle, natives) {
  const n = natives.length;
  const ids = new Array(n);
  const data = new Array(n);
  const kinds = new Array(n);
  let options = null;
  for (let i = 0; i < n; i += 1) {
    const job = natives[i];
    ids[i] = job.id === undefined ? null : job.id;
    data[i] = job.data;
    kinds[i] = SHAPE_KIND[job.shape] | (job.stringData ? KIND_STRING_DATA : 0);
    if (job.options) (options ||= []).push([i, job.options]);
  }
  const got = await handle.push({ ids, data, kinds, options: options ? JSON.stringify(options) : undefined });
  const receipts = new Array(got.ids.length);
  for (let i = 0; i < receipts.length; i += 1) receipts[i] = { id: got.ids[i], duplicate: false, repeated: false };
  for (const i of got.duplicate) receipts[i].duplicate = true;
  for (const i of got.repeated) receipts[i].repeated = true;
  return receipts;
}

function toJob(payload, options = {}) {
  let encoded;
  const opts = options || {};
  try {
    encoded = encodePayload(payload);
    if (opts.id !== undefined && opts.id !== null && opts.id !== '') {
      const whole = encoded.shape === 'whole' ? encoded : { data: JSON.stringify(payload) };
      encoded = { id: typeof opts.id === 'object' ? JSON.stringify(opts.id) : String(opts.id), data: whole.data, stringData: whole.stringData, shape: 'whole', jobID: opts.id };
    }
  } catch (error) {
    throw new PayloadError(`the payload cannot be sent as JSON: ${error.message}`, {
      code: 'ERR_QUEUEXEC_PAYLOAD',
      cause: error,
    });
  }
  const job = { id: encoded.id, data: encoded.data, shape: encoded.shape };
  if (encoded.stringData) job.stringData = true;
  // The options given, as the addon's push batch reads them (see pushNatives); none: no object.
  const o = {};
  if (opts.priority !== undefined) o.priority = integer(opts.priority, 'priority');
  if (opts.retries !== undefined) o.retries = Math.max(0, integer(opts.retries, 'retries'));
  if (opts.timeout !== undefined) o.timeoutMs = milliseconds(opts.timeout, 'timeout');
  if (opts.delay !== undefined) o.delayMs = milliseconds(opts.delay, 'delay');
  if (opts.taskType !== undefined) o.taskType = String(opts.taskType);
  if (opts.inMemory !== undefined) o.inMemory = Boolean(opts.inMemory);
  if (Object.keys(o).length > 0) job.options = o;
  return { native: job, jobID: encoded.jobID };
}

function integer(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n)) {
    throw new ConfigError(`job option ${name} must be an integer, got ${JSON.stringify(value)}`, {
      code: 'ERR_QUEUEXEC_CONFIG',
    });
  }
  return n;
}

function milliseconds(value, name) {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    throw new ConfigError(`job option ${name} must be a number of milliseconds, got ${JSON.stringify(value)}`, {
      code: 'ERR_QUEUEXEC_CONFIG',
    });
  }
  return n;
}

/**
 * queue-xec's execAssets with paths resolved: masterPath relative to process.cwd() (even with a
 * leading '/', as queue-xec joined it), workerPath relative to the worker's workplace. When no
 * file is named task.js, `<cwd>/src/task.js` is added, as queue-xec did; when that file does
 * not exist either, the master says so (every job would fail on the workers).
 */
function resolveAssets(execAssets, log) {
  const given = execAssets && typeof execAssets === 'object' && !Array.isArray(execAssets) ? execAssets : {};
  // A single package name is taken as a list of one.
  const dependencies = given.dependencies === undefined || given.dependencies === null ? [] : [].concat(given.dependencies).map(String);
  // One file object is taken as a list of one; anything else that is not a list is refused.
  let files = [];
  if (Array.isArray(given.files)) files = given.files.slice();
  else if (given.files && typeof given.files === 'object') files = [given.files];
  else if (given.files !== undefined && given.files !== null) {
    throw new ConfigError(
      `execAssets.files must be a list of {masterPath, name, workerPath} objects (or one such object); got ${JSON.stringify(given.files)}`,
      { code: 'ERR_QUEUEXEC_CONFIG' },
    );
  }
  const tasks = files.filter((f) => f && f.name === DEFAULTS.taskEntry);
  if (tasks.length > 1) {
    throw new ConfigError('You can pass only one file with name task.js: check execAssets.files', {
      code: 'ERR_QUEUEXEC_CONFIG',
    });
  }
  if (tasks.length === 0) {
    log.debug('populating execAssets with default values, not found task.js from user:', DEFAULT_TASK.masterPath);
    if (!fs.existsSync(path.join(process.cwd(), DEFAULT_TASK.masterPath))) {
      log.notice(
        `execAssets.files name no task.js and ${path.join(process.cwd(), DEFAULT_TASK.masterPath)} does not exist: ` +
          'workers have no task to run; add {masterPath, name: \'task.js\', workerPath} to execAssets.files or create src/task.js',
      );
    }
    files.push({ ...DEFAULT_TASK });
  }
  const resolved = [];
  for (const file of files) {
    if (!file || typeof file.masterPath !== 'string' || typeof file.workerPath !== 'string') {
      throw new ConfigError(
        `every execAssets.files entry needs masterPath, name and workerPath strings; got ${JSON.stringify(file)}`,
        { code: 'ERR_QUEUEXEC_CONFIG' },
      );
    }
    let masterPath = path.join(process.cwd(), file.masterPath);
    if (!fs.existsSync(masterPath) && path.isAbsolute(file.masterPath) && fs.existsSync(file.masterPath)) {
      masterPath = file.masterPath;
    }
    if (!fs.existsSync(masterPath)) {
      // queue-xec skipped files it could not find, with a warning; so do we.
      log.warn(`File ${file.masterPath} not found in ${masterPath}: not shipped to workers`);
      continue;
    }
    const workerPath = file.workerPath.replace(/\\/g, '/').replace(/^(\.?\/)+/, '');
    resolved.push({
      name: String(file.name || path.basename(workerPath)),
      masterPath: file.masterPath,
      workerPath: file.workerPath,
      resolvedMasterPath: masterPath,
      resolvedWorkerPath: workerPath,
    });
  }
  return { dependencies, files: resolved };
}

module.exports = Master;
module.exports.Master = Master;
module.exports.default = Master;
module.exports.toJob = toJob;
module.exports.resolveAssets = resolveAssets;

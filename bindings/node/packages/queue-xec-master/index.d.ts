// Types of queue-xec-master (queuexec). The constructor, pushNewJob and the onResults shape are
// queue-xec's; everything else is additive.

import { EventEmitter } from 'node:events';

declare namespace Master {
  /** A file shipped to workers. Paths are relative to process.cwd() on each side, as in queue-xec. */
  interface AssetFile {
    /** Where the master reads it, relative to process.cwd() (a leading '/' is allowed, as in queue-xec). */
    masterPath: string;
    /** The name workers know it by; `task.js` is the entry point. */
    name: string;
    /** Where workers write it, relative to their workplace (process.cwd()). */
    workerPath: string;
  }

  interface ExecAssets {
    /** npm packages workers install before running task.js: one name or a list. */
    dependencies?: string | string[];
    /** Files shipped to workers (one file or a list); without a task.js, `<cwd>/src/task.js` is added (as in queue-xec). */
    files?: AssetFile | AssetFile[];
  }

  /** The worker that ran a job: its peer id and the name its owner gave it. */
  interface WorkerInfo {
    id: string;
    name: string;
  }

  /** A job that succeeded: `data` is what task.run resolved to. */
  interface JobSuccess<T = any> {
    /** The payload's id as pushed; absent when the payload had none (as in queue-xec). */
    jobID?: JobId;
    worker: WorkerInfo;
    data: T;
    error?: undefined;
  }

  /** A job that failed for good: its task threw or rejected (or timed out, or lost its worker) on every attempt. */
  interface JobFailure {
    jobID?: JobId;
    worker: WorkerInfo;
    error: string;
    data?: undefined;
  }

  type JobResult<T = any> = JobSuccess<T> | JobFailure;

  /** The job id: the payload's `id` as pushed (a number stays a number). */
  type JobId = string | number;

  /** What the 'result' event adds: the core's job id (the receipt's id) and the attempts it took. */
  interface ResultMeta {
    id: string;
    attempts: number;
  }

  type LogLevel = 'off' | 'info' | 'warn' | 'error' | 'debug';

  interface Options {
    /** Room token; default `process.env.token` (also from .env). */
    token?: string | null;
    /** Files and npm dependencies shipped to workers. */
    execAssets?: ExecAssets | [];
    /** Called with every ended job: `{jobID, worker, data}` or `{jobID, worker, error}`. */
    onResults?: (result: JobResult) => void;
    /** Default `process.env.LOG_LEVEL`, else 'off'. */
    loglevel?: LogLevel;
    /** At least 32 characters; default `process.env.transferEncryptToken`. */
    transferEncryptToken?: string | null;
    /** A SQLite file that keeps accepted jobs across restarts (relative to process.cwd()). Default: in memory. */
    storePath?: string;
    /** Multiaddrs to listen on; default loopback only (workers on this host). E.g. '/ip4/0.0.0.0/tcp/4001'. */
    listen?: string | string[];
    /** Retries of a failed or lost job when its push does not say (default 3). */
    defaultRetries?: number;
    /** Milliseconds a job stays leased to a silent worker before it is requeued (default 15000). */
    leaseTimeout?: number;
    /** First retry delay in milliseconds (default 100, doubling). */
    retryBackoff?: number;
    /** Most worker connections at once. */
    maxWorkers?: number;
    /** Let the core watch the asset files (size and mtime every second, then hashes) and send a
     * changed bundle to workers before their next job (default true, as in the CLI and Python). */
    watchAssets?: boolean;
    /** Announce the master with mDNS on the local network (default: QUEUEXEC_MDNS, else off). */
    mdns?: boolean;
    /** Relays to meet workers through across NATs: multiaddrs ending in /p2p/<id>, as `queuexec
     * relay` prints them (default: QUEUEXEC_BOOTSTRAP, comma separated, also from .env). */
    bootstrap?: string | string[];
    /** Map listening ports on the local router with UPnP (with a bootstrap; default off). */
    upnp?: boolean;
    /** Treat job ids as idempotency keys: a pushed id the master already has is not queued again
     * and its receipt says `duplicate: true`. Default false: a repeated id is queued again as a
     * new job, as in queue-xec, and its receipt says `repeated: true`. Either way a warning shows,
     * at the default log level too. */
    idempotentIds?: boolean;
    /** With a store file: the most ready jobs kept in memory (default 10000). The rest wait only
     * in the store, a few bytes each in memory, and are read back (highest priority, then push
     * order) as the ones in memory run low. */
    maxResidentJobs?: number;
    /**
     * Pull-based producing (Distributo's getTasks): called with `batchSize` whenever fewer than
     * two batches of produced jobs wait or run; returns (or resolves to) an array of payloads,
     * an empty one when there is no more. The master emits 'end' once every produced job has a
     * result and getTasks returned nothing more.
     */
    getTasks?: (n: number) => unknown[] | Promise<unknown[]>;
    /** Receives the results of produced jobs in batches of up to `batchSize` (the last may be smaller). */
    handleResults?: (results: JobResult[]) => void | Promise<void>;
    /** Jobs getTasks is asked for at a time, and results per handleResults call (default 100). */
    batchSize?: number;
    /** okanjo-conductor's lookups: objects or Maps by name, read and written by tasks (ctx.lookup / ctx.setLookup). */
    lookups?: Record<string, Record<string, unknown> | Map<unknown, unknown>>;
    /** Answers workers' messages (ctx.request / worker.request); its return value (or promise) is the reply. */
    onWorkerMessage?: (workerId: string, msg: { cmd: string; data: unknown }) => unknown;
    /** How often 'stats' is emitted, in ms (default 5000; workers report on their own statsInterval). */
    statsInterval?: number;
    /**
     * Local worker processes (okanjo-conductor's workerLimit): N, or true for min(cores, 4).
     * A crashed one is started again (an 'error' with type 'worker_crash' and a 'workerExit').
     */
    localWorkers?: number | boolean;
    /** Local workers leave once the master has no more jobs (and are not started again). */
    exitWhenDrained?: boolean;
    /** More queue-xec-worker options for the local workers (concurrency, name, statsInterval, ...). */
    workerOptions?: Record<string, unknown>;
    /** Serve the dashboard (live web page, JSON API under /api/, Prometheus /metrics) on this
     * address: `'127.0.0.1:9090'`, `'[::1]:9090'` or a port number (loopback). An address that is
     * not loopback needs `dashboardToken`. See the README's Dashboard section. */
    dashboard?: string | number;
    /** The token every dashboard request must carry, at least 16 characters (default:
     * QUEUEXEC_DASHBOARD_TOKEN). Open the page as `/?token=<token>`. */
    dashboardToken?: string;
  }

  /** Per-job options: the second argument of pushNewJob / pushNewJobs. */
  interface JobOptions {
    /** Higher runs first (default 0). */
    priority?: number;
    /** Retries after a failure or a lost worker (default: the master's defaultRetries). */
    retries?: number;
    /** Milliseconds one run may take. */
    timeout?: number;
    /** Milliseconds to wait before the job may start. */
    delay?: number;
    /** Sets the job id (and the result's jobID) instead of the payload's `id`. */
    id?: string | number;
    /** Task type, for workers that map types to functions. */
    taskType?: string;
    /** Keep this job in memory only even with a storePath. */
    inMemory?: boolean;
  }

  /** The answer to a push. */
  interface PushReceipt {
    /** The job's id as the master knows it. */
    id: string;
    /** True when a job with this id was pushed before and the master has `idempotentIds`, so
     * nothing was queued. */
    duplicate: boolean;
    /** True when a job with this id was pushed before and it was queued again as a new job (the
     * default, as in queue-xec); its result carries the same jobID. */
    repeated: boolean;
  }

  /** Counts of jobs and workers: the core's names, the same as Python's `MasterStats`. */
  interface Stats {
    /** Ready to run. */
    queued: number;
    /** Waiting for their delay or retry backoff. */
    delayed: number;
    /** Leased to a worker. */
    running: number;
    /** Finished with a result since the master started. */
    done: number;
    /** Failed for good (dead-lettered) since the master started. */
    dead: number;
    /** Failed attempts that were retried, since the master started. */
    retried: number;
    /** Workers connected now. */
    workers: number;
    /** Worker connections that run through a relay now. */
    relayedWorkers: number;
    /** Bytes of job traffic that went through relays since the start. */
    relayedBytes: number;
  }

  /** Errors thrown or emitted; `code` is ERR_QUEUEXEC_*, one class per code (README: Errors). */
  class QueuexecError extends Error {
    code: string;
  }
  /** ERR_QUEUEXEC_TOKEN */
  class TokenError extends QueuexecError {}
  /** ERR_QUEUEXEC_TOKEN_MISMATCH */
  class TokenMismatchError extends QueuexecError {}
  /** ERR_QUEUEXEC_CONFIG */
  class ConfigError extends QueuexecError {}
  /** ERR_QUEUEXEC_PAYLOAD */
  class PayloadError extends QueuexecError {}
  /** ERR_QUEUEXEC_STORE */
  class StoreError extends QueuexecError {}
  /** Base of AssetPathError and AssetHashError. */
  class AssetError extends QueuexecError {}
  /** ERR_QUEUEXEC_ASSET_PATH */
  class AssetPathError extends AssetError {}
  /** ERR_QUEUEXEC_ASSET_HASH */
  class AssetHashError extends AssetError {}
  /** ERR_QUEUEXEC_IO: a file could not be read or written; `cause` is the OS error. */
  class IoError extends QueuexecError {}
  /** ERR_QUEUEXEC_ENVELOPE */
  class EnvelopeError extends QueuexecError {}
  /** ERR_QUEUEXEC_NETWORK */
  class NetworkError extends QueuexecError {}
  /** ERR_QUEUEXEC_PROTOCOL */
  class ProtocolError extends QueuexecError {}
  /** ERR_QUEUEXEC_UNAUTHORIZED */
  class UnauthorizedError extends QueuexecError {}
  /** ERR_QUEUEXEC_DEPENDENCIES */
  class DependencyError extends QueuexecError {}
  /** A worker could not load task.js (reported by workers). */
  class TaskLoadError extends QueuexecError {}
  /** ERR_QUEUEXEC_CLOSED */
  class ClosedError extends QueuexecError {}
  /** Emitted as 'error' when a job fails for good. */
  class JobError extends QueuexecError {
    jobID: JobId;
    worker: WorkerInfo;
    attempts: number;
  }

  const errors: {
    QueuexecError: typeof QueuexecError;
    TokenError: typeof TokenError;
    TokenMismatchError: typeof TokenMismatchError;
    ConfigError: typeof ConfigError;
    PayloadError: typeof PayloadError;
    StoreError: typeof StoreError;
    AssetError: typeof AssetError;
    AssetPathError: typeof AssetPathError;
    AssetHashError: typeof AssetHashError;
    IoError: typeof IoError;
    EnvelopeError: typeof EnvelopeError;
    NetworkError: typeof NetworkError;
    ProtocolError: typeof ProtocolError;
    UnauthorizedError: typeof UnauthorizedError;
    DependencyError: typeof DependencyError;
    TaskLoadError: typeof TaskLoadError;
    ClosedError: typeof ClosedError;
    JobError: typeof JobError;
  };
}

interface MasterEvents {
  result: [result: Master.JobSuccess, meta: Master.ResultMeta];
  error: [error: Master.JobError | Master.QueuexecError];
  workerJoined: [worker: Master.WorkerInfo];
  workerLeft: [worker: Master.WorkerInfo];
  drained: [];
  warning: [message: string];
  /** Every job getTasks produced has its result, and getTasks returned no more. */
  end: [info: { jobs: number }];
  /** okanjo-conductor's stats: {raw: {[workerId]: {name, last, diff, timeSpan}}, agg: {last, diff}, avgTimeSpan}. */
  stats: [report: { raw: Record<string, { name: string; last: Record<string, number>; diff: Record<string, number>; timeSpan: number }>; agg: { last: Record<string, number>; diff: Record<string, number> }; avgTimeSpan: number }];
  /** A local worker process exited. */
  workerExit: [info: { id: number; pid: number; code: number | null; signal: string | null }];
}

declare class Master extends EventEmitter {
  /** Throws a TokenError at once when a token is missing or the transferEncryptToken is shorter than 32 characters. */
  constructor(options?: Master.Options);

  /** Resolves once the master listens; rejects with why it could not start. */
  readonly ready: Promise<Master>;
  /** The master's peer id, once ready. */
  peerId?: string;
  /** The dashboard's URL (`http://IP:PORT/`), once ready, when the `dashboard` option was given. */
  dashboardUrl?: string | null;
  onResults: (result: Master.JobResult) => void;

  /**
   * Queues a job; resolves once it is durable. Rejects with `payload is undefined` without a
   * payload. A Node worker's task receives the payload as pushed (a JSON round trip: a number
   * id stays a number, other keys stay, a number, string or array arrives as itself); its `id`
   * becomes the result's jobID. Workers of other kinds receive `{id, data}`.
   */
  pushNewJob(payload: unknown, options?: Master.JobOptions): Promise<Master.PushReceipt>;
  /** Queues many jobs at once: all or none. */
  pushNewJobs(payloads: unknown[], options?: Master.JobOptions): Promise<Master.PushReceipt[]>;
  stats(): Promise<Master.Stats>;
  /**
   * Cancels the job with this id (its jobID, or the id of its receipt): queued, delayed or
   * running. A running task's `signal` aborts. Each cancelled job's result is an error
   * `the job was cancelled (cancel() on the master)`. Resolves with how many jobs were
   * cancelled (0: none waiting or running; more than 1 for an id pushed more than once).
   */
  cancel(jobId: string | number): Promise<number>;
  lookups: Record<string, Record<string, unknown> | Map<unknown, unknown>>;
  onWorkerMessage?: (workerId: string, msg: { cmd: string; data: unknown }) => unknown;
  getLookup(name: string): Record<string, unknown> | Map<unknown, unknown> | undefined;
  getLookupValue(name: string, key: unknown): unknown;
  setLookupValue(name: string, key: unknown, value: unknown): void;
  /** Sends {cmd, data} to one worker (its peer id); false when it is not connected. */
  sendMessageToWorker(workerId: string, cmd: string, data?: unknown): Promise<boolean>;
  /** Sends {cmd, data} to every worker; resolves with how many got it. */
  broadcast(cmd: string, data?: unknown): Promise<number>;
  broadcastMessageToWorkers(cmd: string, data?: unknown): Promise<number>;
  /** Stops every worker and hands out no more jobs; unfinished jobs stay queued. */
  abort(): Promise<number>;
  /** The last 'stats' report. */
  lastStats: unknown;
  /** Emits 'stats' now when workers reported since the last report; returns lastStats. */
  flushStats(): unknown;
  /** The local worker processes' pids, by worker id. */
  localWorkerPids(): Record<number, number>;
  /** Re-reads the asset files; true when they changed. */
  reloadAssets(): Promise<boolean>;
  /** Addresses workers on other machines can use as their `master` option. */
  listenAddrs(): Promise<string[]>;
  /** Stops the master; results that arrived before are still delivered. */
  close(): Promise<void>;

  on<K extends keyof MasterEvents>(event: K, listener: (...args: MasterEvents[K]) => void): this;
  once<K extends keyof MasterEvents>(event: K, listener: (...args: MasterEvents[K]) => void): this;
  off<K extends keyof MasterEvents>(event: K, listener: (...args: MasterEvents[K]) => void): this;
  addListener<K extends keyof MasterEvents>(event: K, listener: (...args: MasterEvents[K]) => void): this;
  emit<K extends keyof MasterEvents>(event: K, ...args: MasterEvents[K]): boolean;
}

export = Master;

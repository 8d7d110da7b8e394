// Types of the native addon (src/*.rs) as lib/ uses it: the events it hands out, as
// discriminated unions on `kind`, the counts, and the master and worker handles (the config
// functions, defaults() and setLogLevel() are not declared here). test/events.test.js checks these declarations
// against what a real master and worker emit; keep the two in step with src/master.rs and
// src/worker.rs.

/** A job's end as the addon reports it (lib/master.js turns it into queue-xec's result shape). */
export interface NativeJobResult {
  /** The core's job id (always a string). */
  jobId: string;
  /** The peer id of the worker that ran the final attempt (empty when none did). */
  workerId: string;
  /** That worker's name. */
  workerName: string;
  /** The result, parsed, when the job succeeded and its JSON is short (4 KiB at most). */
  data?: unknown;
  /**
   * The result as JSON text, when the job succeeded and its JSON is longer (in the batch: the
   * index of the text in `Batch.texts`, which lib/master.js puts in its place).
   */
  dataText?: string;
  /** The final attempt's error, when the job failed. */
  error?: string;
  /** How many attempts it took. */
  attempts: number;
  /** The job was pushed without an id (`jobId` is the master's `job-N`). */
  automatic: boolean;
}

/** Something that happened on a master (`NativeMaster.nextEvents`). */
export type MasterEvent =
  | { kind: 'result'; result: NativeJobResult }
  | { kind: 'workerJoined'; workerId: string; workerName: string }
  | { kind: 'workerLeft'; workerId: string; workerName: string }
  | { kind: 'drained' }
  | { kind: 'warning'; message: string }
  | {
      kind: 'call';
      callId: number;
      workerId: string;
      workerName: string;
      op: 'lookup' | 'setLookup' | 'message';
      name?: string;
      key?: string;
      value?: string;
      cmd?: string;
      data?: string;
    }
  | { kind: 'stats'; report: string }
  | { kind: 'taskLoadFailed'; workerId: string; workerName: string; reason: string };

/** Something that happened on a worker (`NativeWorker.nextEvents`). */
export type WorkerEvent =
  | { kind: 'connected'; master: string; path: 'direct' | 'relayed' }
  | { kind: 'disconnected'; reason: string }
  | { kind: 'assetsInstalled'; bundle: string; fetched: number }
  | { kind: 'jobFinished'; jobId: string; error?: string }
  | { kind: 'refused'; reason: string }
  | { kind: 'jobCancelled'; jobId: string }
  | { kind: 'message'; cmd: string; data: string }
  | { kind: 'aborted' }
  | { kind: 'drained' };

/** Counts of a master's jobs and workers: the core's `Stats`, with the same names in Python. */
export interface MasterStats {
  queued: number;
  delayed: number;
  running: number;
  done: number;
  /** Failed for good (dead-lettered) since the master started. */
  dead: number;
  retried: number;
  workers: number;
  /** Workers connected through a relay now. */
  relayedWorkers: number;
  /** Bytes of job traffic that went through relays since the master started. */
  relayedBytes: number;
}

/** Counts of a worker's jobs: the core's `WorkerStats`, with the same names in Python. */
export interface WorkerStats {
  done: number;
  failed: number;
  running: number;
  connected: boolean;
  /** `'direct'` or `'relayed'` while connected. */
  path?: string | null;
  /** Bytes of job traffic that went through a relay. */
  relayedBytes: number;
}

/**
 * The answer to one push. `repeated`: the id was pushed before and the job was queued again as a
 * new job (the default, as in queue-xec). `duplicate`: the id was pushed before and, with the
 * master's `idempotentIds`, nothing was queued.
 */
export interface PushReceipt {
  id: string;
  duplicate: boolean;
  repeated: boolean;
}

/** A batch from the addon: objects as one JSON text, and the long texts they refer to by index. */
export interface Batch {
  json: string;
  texts: string[];
}

/**
 * One push in columns (lib/master.js `pushNatives`): one entry per job in each array. `kinds`:
 * the shape (0 job, 1 numericId, 2 whole), plus 4 when the data is a plain string the core
 * makes JSON text of. `options`: JSON text of `[[index, {priority?, retries?, timeoutMs?,
 * delayMs?, taskType?, inMemory?}], ...]`, or undefined.
 */
export interface PushBatch {
  ids: Array<string | null>;
  data: string[];
  kinds: number[];
  options?: string;
}

/** A push's answer in columns: each job's id, and the indexes of duplicate and repeated ones. */
export interface PushReceipts {
  ids: string[];
  duplicate: number[];
  repeated: number[];
}

export interface NativeMaster {
  readonly peerId: string;
  push(batch: PushBatch): Promise<PushReceipts>;
  /**
   * Up to `max` events: `json` is the JSON text of a `MasterEvent[]` (one `JSON.parse` per
   * batch), `texts` the long results they refer to; an empty array once the master is closed
   * and every event was read.
   */
  nextEvents(max: number): Promise<Batch>;
  stats(): Promise<MasterStats>;
  reloadAssets(): Promise<boolean>;
  /** Cancels the jobs with this id; resolves with how many were cancelled. */
  cancel(jobId: string): Promise<number>;
  /** Answers a worker's call: JSON text when ok, else the error text. */
  answer(callId: number, ok: boolean, value: string): boolean;
  /** A message to one worker (by peer id) or, with null, to all; resolves with how many got it. */
  sendMessage(workerId: string | null, cmd: string, data: string): Promise<number>;
  abort(): Promise<number>;
  /** The workers' aggregated statistics (JSON), or null when none reported since the last report. */
  statsReport(): string | null;
  ack(jobIds: string[]): void;
  listenAddrs(): string[];
  bundleHash(): string;
  /** The dashboard's URL (`http://IP:PORT/`) when the master was started with `dashboard`. */
  readonly dashboardUrl: string | null;
  close(): Promise<void>;
}

export interface NativeWorker {
  readonly peerId: string;
  /** Up to `max` events; an empty array once the worker has stopped and every event was read. */
  nextEvents(max: number): Promise<WorkerEvent[]>;
  /**
   * Up to `max` jobs to run: `json` is the JSON text of an array of `{seq, id, attempt, shape,
   * taskType?, timeoutMs?, data | dataText}` (`data` parsed when short JSON, else `dataText`, the
   * index of its text in `texts`); an empty array once stopped.
   */
  nextJobs(max: number): Promise<Batch>;
  /** The outcomes of jobs from nextJobs: `texts[i]` is the JSON result, or the error when `failed[i]`. */
  finishJobs(seqs: number[], failed: boolean[], texts: string[]): void;
  stats(): WorkerStats;
  /** Asks the master: lookup (name, key), setLookup (name, key, JSON value) or message (cmd, -, JSON data). */
  call(op: string, a: string, b?: string, c?: string): Promise<{ ok: boolean; value: string }>;
  metric(name: string, delta: number): boolean;
  wait(): Promise<void>;
  close(): Promise<void>;
}

export function startMaster(options: object): Promise<NativeMaster>;
export function startWorker(
  options: object,
  assetsChanged: (assets: object) => Promise<object>,
): Promise<NativeWorker>;

// Type-checked by `npm test` (tsc --noEmit): the addon's events are discriminated unions on
// `kind`, so a switch narrows each member and a kind left unhandled fails to compile.
import type { MasterEvent, WorkerEvent, MasterStats } from 'queuexec-native/lib/native';

export function describeMasterEvent(event: MasterEvent): string {
  switch (event.kind) {
    case 'result':
      return event.result.error === undefined ? `job ${event.result.jobId} done` : `job ${event.result.jobId} failed`;
    case 'workerJoined':
    case 'workerLeft':
      return `${event.kind} ${event.workerName} (${event.workerId})`;
    case 'drained':
      return 'drained';
    case 'warning':
      return event.message;
    case 'call':
      return `${event.workerName} asks: ${event.op}`;
    case 'stats':
      return `stats ${event.report}`;
    case 'taskLoadFailed':
      return `${event.workerName} (${event.workerId}) cannot load the task: ${event.reason}`;
    default: {
      const unhandled: never = event;
      return unhandled;
    }
  }
}

export function describeWorkerEvent(event: WorkerEvent): string {
  switch (event.kind) {
    case 'connected':
      return `connected to ${event.master} (${event.path})`;
    case 'disconnected':
    case 'refused':
      return `${event.kind}: ${event.reason}`;
    case 'assetsInstalled':
      return `bundle ${event.bundle}: ${event.fetched} file(s) fetched`;
    case 'jobFinished':
      return event.error === undefined ? `job ${event.jobId} done` : `job ${event.jobId} failed: ${event.error}`;
    case 'jobCancelled':
      return `job ${event.jobId} cancelled`;
    case 'message':
      return `message ${event.cmd}: ${event.data}`;
    case 'aborted':
    case 'drained':
      return event.kind;
    default: {
      const unhandled: never = event;
      return unhandled;
    }
  }
}

export function deadLettered(stats: MasterStats): number {
  return stats.dead;
}

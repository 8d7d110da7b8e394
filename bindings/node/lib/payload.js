'use strict';
// How a pushed payload travels as a core job {id, data: JSON text}, and how a Node worker turns
// it back into exactly what was pushed (queue-xec's contract: the task receives the payload as
// a JSON round trip, types kept).
//
// Every kind of worker (this Node worker, the embedded runtime, the CLI, Python) receives a
// job as {id, data}. So a payload of queue-xec's usual shape {id, data} travels as exactly
// that: its id becomes the job id and its data the job data, and every worker's task sees
// `job.id` and `job.data` as queue-xec's did. Anything else (extra keys, no id, a number,
// string or array) travels whole as the data.
//
// What the job id and data alone cannot say (that the id was a number, or that the data is the
// whole payload) travels with the job as its shape, a field the core seals with the data
// (queuexec_core::PayloadShape), and every worker hands its task the same value:
//   'job'        {id: string, data}  -> job id = id,         data = JSON(data)
//   'numericId'  {id: number, data}  -> job id = String(id), data = JSON(data)
//   'whole'      anything else       -> job id = payload.id when it has one, data = JSON(payload)

/**
 * A payload as {id, data, stringData, shape, jobID}: the core job id (undefined: the master
 * assigns one), the JSON text to send (or, with `stringData`, a string the core sends as a JSON
 * string), its shape, and the jobID the result will carry (the payload's own id, undefined when
 * it has none, as queue-xec's results had none). Throws a TypeError for what JSON cannot carry.
 */
function encodePayload(payload) {
  const isObject = payload !== null && typeof payload === 'object' && !Array.isArray(payload);
  const keys = isObject ? Object.keys(payload) : [];
  const jobShaped = keys.length === 2 && keys[0] === 'id' && keys[1] === 'data' && payload.data !== undefined;
  const id = isObject ? payload.id : undefined;
  if (jobShaped && typeof id === 'string' && id !== '') {
    return { id, ...jsonOf(payload.data), shape: 'job', jobID: id };
  }
  if (jobShaped && typeof id === 'number' && Number.isFinite(id) && String(Number(String(id))) === String(id)) {
    return { id: String(id), ...jsonOf(payload.data), shape: 'numericId', jobID: id };
  }
  const json = jsonOf(payload);
  let coreId;
  if ((typeof id === 'string' && id !== '') || (typeof id === 'number' && Number.isFinite(id))) coreId = String(id);
  return { id: coreId, ...json, shape: 'whole', jobID: coreId === undefined ? undefined : id };
}

/**
 * Strings this long or longer cross as they are, and the core quotes and escapes them (off the
 * JS thread, where V8's JSON.stringify of a megabyte string took about 2 ms of the pushing
 * thread); shorter ones are stringified here, which is cheaper than a second kind of job.
 */
const STRING_DATA_MIN = 4096;

/** {data} as JSON text, or {data, stringData: true} for a long string the core makes JSON of. */
function jsonOf(value) {
  // A lone surrogate would not survive the crossing as UTF-8: JSON.stringify escapes it.
  if (typeof value === 'string' && value.length >= STRING_DATA_MIN && value.isWellFormed()) {
    return { data: value, stringData: true };
  }
  return { data: stringify(value) };
}

function stringify(value) {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`a payload of type ${typeof value} cannot be sent as JSON`);
  return text;
}

/**
 * What a task receives for a job of the addon's `nextJobs` batch, by its shape: the payload as
 * pushed (see the table above). Its data is already parsed (`data`) when it was short JSON,
 * else its text (`dataText`) is parsed here, falling back to the text.
 */
function decodeJob(job) {
  return shaped(job.id, job.dataText === undefined ? job.data : parse(job.dataText), job.shape);
}

function shaped(id, value, shape) {
  if (shape === 'whole') return value;
  if (shape === 'numericId') {
    const n = Number(id);
    if (Number.isFinite(n) && String(n) === id) return { id: n, data: value };
  }
  return { id, data: value };
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

module.exports = { encodePayload, decodeJob, STRING_DATA_MIN };

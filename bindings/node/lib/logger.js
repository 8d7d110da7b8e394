'use strict';
// The log of queue-xec-master and queue-xec-worker, as queue-xec's Logger wrote it: lines on
// stdout, `DD-MM HH:mm:ss [LEVEL] > message` in local time, with its LOG_LEVEL names and
// thresholds (off 0, info 1, warn 2, error 3, debug 4: a message shows when the level's code is
// at least its own, so `error` shows info, warn and error lines). Colour only on a terminal,
// and never when NO_COLOR is set (https://no-color.org).

const util = require('node:util');

/** queue-xec's level codes; an unknown name means off, as in queue-xec. */
const LEVELS = { off: 0, info: 1, warn: 2, error: 3, debug: 4 };

const COLOURS = { INFO: null, WARN: '\x1b[33m', ERROR: '\x1b[31m', DEBUG: '\x1b[35m' };
const RESET = '\x1b[0m';

/** What the core's log (tracing) shows for a queue-xec level: the most it can show at once. */
const CORE_LEVEL = { off: 'off', info: 'info', warn: 'info', error: 'info', debug: 'debug' };

/** `DD-MM HH:mm:ss` in local time, as queue-xec's Helper.LocalTime (moment) wrote it. */
function localTime(date = new Date()) {
  const two = (n) => String(n).padStart(2, '0');
  return `${two(date.getDate())}-${two(date.getMonth() + 1)} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/** Whether `stream` gets colour: a terminal, and NO_COLOR unset or empty. */
function wantsColour(stream, env = process.env) {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return Boolean(stream && stream.isTTY);
}

class Logger {
  /**
   * @param {string} [level] queue-xec's loglevel (off, info, warn, error, debug); unset means off
   * @param {string} [who] named in the one-line notice about an unknown level
   * @param {{stream?: NodeJS.WritableStream, env?: object}} [io] for tests
   */
  constructor(level, who = 'queue-xec', io = {}) {
    this.stream = io.stream || process.stdout;
    this.colour = wantsColour(this.stream, io.env || process.env);
    // Unset: off, but notices (what would make every job fail) still show.
    this.explicit = level !== undefined && level !== null && level !== '';
    let name = this.explicit ? String(level).toLowerCase() : 'off';
    if (!(name in LEVELS)) {
      // queue-xec took an unknown level (its env.sample's `fatal` among them) as off.
      if (name !== 'fatal') {
        this.stream.write(`${who}: unknown loglevel ${JSON.stringify(level)} (use off, info, warn, error or debug): logging is off\n`);
      }
      name = 'off';
    }
    this.level = name;
    this.code = LEVELS[name];
  }

  /** The level to give the core's log for this one. */
  get coreLevel() {
    return CORE_LEVEL[this.level];
  }

  write(label, args) {
    const colour = this.colour ? COLOURS[label] : null;
    const tag = colour ? `${colour}${label}${RESET}` : label;
    const text = util.formatWithOptions({ colors: this.colour }, ...args);
    this.stream.write(`${localTime()} [${tag}] > ${colour ? `${colour}${text}${RESET}` : text}\n`);
  }

  info(...args) {
    if (this.code >= 1) this.write('INFO', args);
  }

  warn(...args) {
    if (this.code >= 2) this.write('WARN', args);
  }

  error(...args) {
    if (this.code >= 3) this.write('ERROR', args);
  }

  debug(...args) {
    if (this.code >= 4 && args.length > 0) this.write('DEBUG', args);
  }

  /**
   * A warning that shows at the default level too (something that makes jobs fail, such as a
   * task that cannot load); only an explicit `off` or `info` silences it.
   */
  notice(...args) {
    if (this.code >= 2 || !this.explicit) this.write('WARN', args);
  }
}

module.exports = { Logger, LEVELS, localTime, wantsColour };

'use strict';
// The JavaScript layer shared by queue-xec-master and queue-xec-worker, over the native addon.
// The two npm packages re-export from here (or from their bundled copy of it, once packed).

module.exports = {
  get Master() {
    return require('./lib/master');
  },
  get Worker() {
    return require('./lib/worker');
  },
  get errors() {
    return require('./lib/errors');
  },
  get native() {
    return require('./lib/native');
  },
  get setup() {
    return require('./lib/setup');
  },
};

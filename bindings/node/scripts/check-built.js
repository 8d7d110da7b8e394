#!/usr/bin/env node
'use strict';
// Fails fast, with what to do, when the addon has not been built.
try {
  require('../lib/native');
} catch (error) {
  console.error(error.message);
  process.exit(1);
}

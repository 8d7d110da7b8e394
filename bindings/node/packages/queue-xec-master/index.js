'use strict';
// queue-xec-master on queuexec's Rust core. A packed package carries its copy of the shared
// layer and the native addon in runtime/; inside the repository they come from queuexec-native.

const fs = require('node:fs');
const path = require('node:path');

const bundled = path.join(__dirname, 'runtime', 'index.js');
const shared = fs.existsSync(bundled) ? require(bundled) : require('queuexec-native');

const Master = shared.Master;

module.exports = Master;
module.exports.Master = Master;
module.exports.default = Master;
module.exports.errors = shared.errors;

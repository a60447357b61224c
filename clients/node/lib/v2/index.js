'use strict';
// mediasoup v2's server API (require('mediasoup')) on Tureen: `Server(options)` (callable
// without `new`) and `errors`.

const { Server: ServerClass } = require('./Server');
const errors = require('./errors');

/** v2's mediasoup.Server(): options.control (or TUREEN_CONTROL) names Tureen's control endpoint. */
function Server(options) {
  return new ServerClass(options);
}
Server.prototype = ServerClass.prototype; // `server instanceof mediasoup.Server` holds

module.exports = { Server, ServerClass, errors };

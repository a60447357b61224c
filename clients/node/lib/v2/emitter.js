'use strict';
// The EventEmitter of the v2 objects: no listener limit, and a listener that throws does not
// stop the others or the mirror (as v2's EnhancedEventEmitter.safeEmit; the error is reported
// as an uncaught exception instead of being logged and lost).

const { EventEmitter } = require('node:events');

class SafeEmitter extends EventEmitter {
  constructor() {
    super();
    this.setMaxListeners(Infinity);
  }

  safeEmit(event, ...args) {
    try {
      this.emit(event, ...args);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

/** A random integer id in v2's range (its utils.randomNumber). */
function randomNumber() {
  return 10000000 + Math.floor(Math.random() * 90000000);
}

module.exports = { SafeEmitter, randomNumber };

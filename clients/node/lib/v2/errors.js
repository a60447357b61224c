'use strict';
// mediasoup v2's own error class (require('mediasoup').errors.InvalidStateError): thrown or
// rejected with when an object is used after it closed.

class InvalidStateError extends Error {
  constructor(message) {
    super(message);
    Object.defineProperty(this, 'name', { value: 'InvalidStateError' });
  }
}

module.exports = { InvalidStateError };

'use strict';
// Error types of the Tureen control API (docs/control-api.md, "Envelope": error codes).
// Apps switch on `code`, humans read `message`.

/** Every code a reply's `error.code` can carry. */
const ErrorCode = Object.freeze({
  BAD_REQUEST: 'bad_request',
  UNKNOWN_METHOD: 'unknown_method',
  NOT_FOUND: 'not_found',
  DUPLICATE: 'duplicate',
  INVALID_STATE: 'invalid_state',
  UNSUPPORTED: 'unsupported',
  UNAVAILABLE: 'unavailable',
  LIMIT: 'limit',
  INTERNAL: 'internal',
});

const CODES = new Set(Object.values(ErrorCode));

/** A request Tureen refused (or that got no answer): `code` is one of ErrorCode's values. */
class TureenError extends Error {
  constructor(code, message, method) {
    super(message);
    this.name = 'TureenError';
    this.code = CODES.has(code) ? code : ErrorCode.INTERNAL;
    this.method = method === undefined ? null : method;
  }

  /** The error of an `ok: false` reply (an unknown code becomes `internal`, as in Python). */
  static fromWire(error, method) {
    if (error !== null && typeof error === 'object') {
      const message = error.message === undefined ? 'unknown error' : String(error.message);
      return new TureenError(error.code, message, method);
    }
    return new TureenError(ErrorCode.INTERNAL, String(error), method);
  }
}

/**
 * No reply within the request's timeout: the server is not running there, is restarting, or
 * refuses this client's CURVE key (it then answers nothing). Code `unavailable`, as the
 * Python client's. The request may still be executed later if the server receives it.
 */
class TureenTimeoutError extends TureenError {
  constructor(message, method, timeoutMs) {
    super(ErrorCode.UNAVAILABLE, message, method);
    this.name = 'TureenTimeoutError';
    this.timeout = timeoutMs;
  }
}

module.exports = { ErrorCode, TureenError, TureenTimeoutError };

'use strict';
// @tureen/client: the Node client of Tureen's ZeroMQ control API (README.md).
const { TureenClient, DEFAULT_ENDPOINT } = require('./lib/client');
const { ErrorCode, TureenError, TureenTimeoutError } = require('./lib/errors');
const { parseCertificate, loadCertificate, loadPublicKey } = require('./lib/curve');

module.exports = {
  TureenClient,
  DEFAULT_ENDPOINT,
  ErrorCode,
  TureenError,
  TureenTimeoutError,
  parseCertificate,
  loadCertificate,
  loadPublicKey,
};

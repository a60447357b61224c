'use strict';
// @tureen/client: the Node client of Tureen's ZeroMQ control API (README.md), and mediasoup
// v2's server API on top of it (`Server`, `errors`: an app that does require('mediasoup') runs
// on this package unchanged).
const { TureenClient, DEFAULT_ENDPOINT } = require('./lib/client');
const { ErrorCode, TureenError, TureenTimeoutError } = require('./lib/errors');
const { parseCertificate, loadCertificate, loadPublicKey } = require('./lib/curve');
const v2 = require('./lib/v2');

module.exports = {
  TureenClient,
  DEFAULT_ENDPOINT,
  ErrorCode,
  TureenError,
  TureenTimeoutError,
  parseCertificate,
  loadCertificate,
  loadPublicKey,
  Server: v2.Server,
  errors: v2.errors,
};

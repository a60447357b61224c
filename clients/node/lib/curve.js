'use strict';
// CURVE keys of a control-API client, from ZeroMQ certificate files (the `zmq.auth` format
// `tureen keys generate` writes: NAME.key holds the public key, NAME.key_secret both) or
// given as 40-character Z85 strings (docs/security.md).

const fs = require('node:fs');

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

function checkKey(key, what) {
  if (typeof key !== 'string' || !Z85_KEY.test(key)) {
    throw new TypeError(`${what} is not a CURVE key (40 Z85 characters)`);
  }
  return key;
}

/**
 * Parse a ZeroMQ certificate's text: `{publicKey, secretKey}` of its `curve` section
 * (`secretKey` is null in a public certificate). Throws with the reason when it is not one.
 */
function parseCertificate(text, where = 'the certificate') {
  let section = null;
  const keys = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw;
    // A comment is a whole line ('#' is also a Z85 character, so it may occur inside a key).
    if (!line.trim() || line.trim().startsWith('#')) continue;
    const indented = /^\s/.test(line);
    if (!indented) {
      section = line.trim();
      continue;
    }
    if (section !== 'curve') continue;
    const match = /^\s+([a-z-]+)\s*=\s*"([^"]*)"\s*$/.exec(line);
    if (match) keys[match[1]] = match[2];
  }
  if (keys['public-key'] === undefined) {
    throw new TypeError(`${where} is not a ZeroMQ certificate: it has no public-key in a curve section`);
  }
  return {
    publicKey: checkKey(keys['public-key'], `the public key in ${where}`),
    secretKey: keys['secret-key'] === undefined ? null : checkKey(keys['secret-key'], `the secret key in ${where}`),
  };
}

/** `{publicKey, secretKey}` from a certificate file (secretKey null for a NAME.key file). */
function loadCertificate(path) {
  let text;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new TypeError(`cannot read CURVE certificate ${path} (${err.code || err.message}); make one with \`tureen keys generate\``);
  }
  return parseCertificate(text, String(path));
}

/** A server key given as its 40 Z85 characters or as a certificate file (public or secret). */
function loadPublicKey(value) {
  if (typeof value === 'string' && Z85_KEY.test(value) && !fs.existsSync(value)) return value;
  if (typeof value !== 'string' || !fs.existsSync(value)) {
    throw new TypeError(
      `server key ${JSON.stringify(value)} is neither a CURVE public key (40 Z85 characters) nor a ` +
        "certificate file: give the server's NAME.key file or its public key",
    );
  }
  return loadCertificate(value).publicKey;
}

/**
 * The `{publicKey, secretKey, serverKey}` of a client from the `curve` option:
 * `{cert, serverKey}` (cert: this client's NAME.key_secret file; serverKey: the server's
 * NAME.key file or public key) or `{publicKey, secretKey, serverKey}` (Z85 strings).
 */
function resolveClientKeys(curve) {
  if (curve === undefined || curve === null) return null;
  if (typeof curve !== 'object') throw new TypeError('curve must be {cert, serverKey} or {publicKey, secretKey, serverKey}');
  if (curve.serverKey === undefined) throw new TypeError("curve.serverKey is missing: the server's NAME.key file or its public key");
  const serverKey = loadPublicKey(curve.serverKey);
  if (curve.cert !== undefined) {
    if (curve.publicKey !== undefined || curve.secretKey !== undefined) {
      throw new TypeError('curve: give either cert or publicKey and secretKey, not both');
    }
    const { publicKey, secretKey } = loadCertificate(curve.cert);
    if (secretKey === null) {
      throw new TypeError(`${curve.cert} holds only a public key: give the secret certificate (the .key_secret file)`);
    }
    return { publicKey, secretKey, serverKey };
  }
  if (curve.publicKey === undefined || curve.secretKey === undefined) {
    throw new TypeError('curve needs cert (a NAME.key_secret file) or both publicKey and secretKey');
  }
  return {
    publicKey: checkKey(curve.publicKey, 'curve.publicKey'),
    secretKey: checkKey(curve.secretKey, 'curve.secretKey'),
    serverKey,
  };
}

module.exports = { parseCertificate, loadCertificate, loadPublicKey, resolveClientKeys };

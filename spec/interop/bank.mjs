// A third-party "bank" for the interop specs (spec/interop/*_spec.lua): an
// HTTPS server on 127.0.0.1 (TLS from the test PKI) whose checks are made by
// implementations we did not write:
//   * Georgian requests (path contains "/georgia/"): the x-jws-signature is
//     verified with `jose` (panva; RFC 7515 + RFC 7797 b64=false, crit) over a
//     payload rebuilt HERE from the documented rule (xs2a-reference.md §4.2),
//     from the headers as they arrived on the wire. The answer is signed by
//     `jose` (FlattenedSign, b64=false) with the bank's seal, as a Georgian
//     bank would.
//   * Berlin Group requests (path contains "/berlin/"): the Signature header
//     (draft-cavage profile of IG 1.3.8 §4.2) is parsed and verified by
//     `http-signature` (joyent) and, independently, by Node's crypto.verify
//     over a signing string rebuilt here; the Digest by Node's crypto.
// Every verdict is appended as one JSON line to the --log file; a request
// that fails a check gets 401 with the reason.
//
// usage: node bank.mjs --pki DIR --port N --log FILE --ready FILE
import https from 'node:https';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import * as jose from 'jose';

const require = createRequire(import.meta.url);
const httpSignature = require('http-signature');
const VERSIONS = {
  jose: require('jose/package.json').version,
  'http-signature': require('http-signature/package.json').version,
};

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const pki = (n) => fs.readFileSync(`${args.pki}/${n}`);
const ca = new crypto.X509Certificate(pki('ca.pem'));
const bankCert = new crypto.X509Certificate(pki('aspsp-seal.pem'));
const bankKey = crypto.createPrivateKey(pki('aspsp-seal.key'));
// a second seal with a P-256 key (ES256 answers), for a request that asks
// with `x-interop-sign-with: ec`
const bankEcCert = new crypto.X509Certificate(pki('qseal-ec.pem'));
const bankEcKey = crypto.createPrivateKey(pki('qseal-ec.key'));
const MID = 'http://uri.etsi.org/19182/HttpHeaders';

const log = (v) => fs.appendFileSync(args.log, JSON.stringify(v) + '\n');
const fail = (why) => { const e = new Error(why); e.check = true; throw e; };
const sha = (alg, body) => crypto.createHash(alg).update(body).digest('base64');
const DIGEST_ALGS = { 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };

function checkDigest(h, body) {
  const m = /^(SHA-(?:256|384|512))=(.+)$/.exec(h.digest || '');
  if (!m) fail('no Digest header (or an unknown algorithm)');
  if (sha(DIGEST_ALGS[m[1]], body) !== m[2]) fail('Digest does not match the body');
}

function certFrom(b64, what) {
  let cert;
  try { cert = new crypto.X509Certificate(Buffer.from(b64, 'base64')); } catch { fail(`${what} is not a certificate`); }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) fail(`${what} is not issued by the test CA`);
  return cert;
}

// --- Georgian JWS (reference §4.2) --------------------------------------
async function verifyJws(req, h, body) {
  const jws = h['x-jws-signature'];
  if (!jws) fail('no x-jws-signature');
  const parts = jws.split('.');
  if (parts.length !== 3 || parts[1] !== '') fail('x-jws-signature is not a detached compact JWS');
  const [head, , sig] = parts;
  const ph = JSON.parse(Buffer.from(head, 'base64url').toString('utf8'));
  if (ph.b64 !== false) fail('b64 is not false');
  if (!ph.sigD || ph.sigD.mId !== MID || !Array.isArray(ph.sigD.pars)) fail('sigD is not the HTTP headers profile');
  // the signed set the rule asks for, from the headers that arrived
  const rule = ['(request-target)', 'host', 'x-request-id'];
  if (h['content-type'] !== undefined) rule.push('content-type');
  if (h['content-length'] !== undefined) rule.push('content-length');
  rule.push('digest');
  for (const k of Object.keys(h).sort()) if (k.startsWith('psu-')) rule.push(k);
  const pars = ph.sigD.pars;
  if ([...pars].sort().join(' ') !== [...rule].sort().join(' ')) {
    fail(`sigD.pars [${pars.join(' ')}] is not the rule's set [${rule.join(' ')}]`);
  }
  const t = Date.parse(ph.sigT);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(ph.sigT || '') || !(Math.abs(Date.now() - t) < 60000)) {
    fail(`sigT ${ph.sigT} is not a current UTC time yyyy-MM-ddTHH:mm:ssZ`);
  }
  checkDigest(h, body);
  const signer = certFrom(ph.x5c && ph.x5c[0], 'x5c[0]');
  const lines = pars.map((p) => {
    const v = p === '(request-target)' ? `${req.method.toLowerCase()} ${req.url}` : h[p];
    if (v === undefined) fail(`signed header ${p} was not received`);
    return `${p}: ${v}`;
  });
  const key = await jose.importX509(signer.toString(), ph.alg);
  // jose checks crit itself: sigT and sigD are declared as understood (and
  // checked above); b64 is jose's own (RFC 7797)
  await jose.flattenedVerify({ protected: head, payload: lines.join('\n'), signature: sig }, key,
    { crit: { sigT: true, sigD: true }, algorithms: [ph.alg] });
  return { alg: ph.alg, pars };
}

async function signResponse(status, headers, body, ec) {
  const pars = ['(response-status)', 'x-request-id', 'content-type', 'content-length', 'digest'];
  headers['content-length'] = String(Buffer.byteLength(body));
  headers.digest = `SHA-256=${sha('sha256', body)}`;
  const lines = pars.map((p) => `${p}: ${p === '(response-status)' ? status : headers[p]}`).join('\n');
  const res = await new jose.FlattenedSign(new TextEncoder().encode(lines))
    .setProtectedHeader({
      alg: ec ? 'ES256' : 'RS256', b64: false, crit: ['sigT', 'sigD', 'b64'],
      sigT: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      sigD: { pars, mId: MID }, x5c: [(ec ? bankEcCert : bankCert).raw.toString('base64')],
    })
    .sign(ec ? bankEcKey : bankKey, { crit: { sigT: true, sigD: true } });
  headers['x-jws-signature'] = `${res.protected}..${res.signature}`;
}

// --- Berlin Group draft-cavage (reference §4.1) -------------------------
const CAVAGE = { 'rsa-sha256': ['sha256', 'rsa'], 'rsa-sha512': ['sha512', 'rsa'],
  'ecdsa-sha256': ['sha256', 'ec'], 'ecdsa-sha512': ['sha512', 'ec'] };

function verifyCavage(req, h, body) {
  checkDigest(h, body);
  const cert = certFrom(h['tpp-signature-certificate'], 'TPP-Signature-Certificate');
  // third party: joyent http-signature parses the header and verifies
  let parsed;
  try {
    parsed = httpSignature.parseRequest({ headers: h, method: req.method, url: req.url, httpVersion: '1.1' },
      { headers: ['digest', 'x-request-id'], strict: true });
  } catch (e) { fail(`http-signature: ${e.message}`); }
  const spki = cert.publicKey.export({ type: 'spki', format: 'pem' });
  if (!httpSignature.verifySignature(parsed, spki)) fail('http-signature: signature does not verify');
  // the profile's own rules, rebuilt here
  const p = parsed.params;
  const alg = CAVAGE[p.algorithm];
  if (!alg || alg[1] !== (cert.publicKey.asymmetricKeyType === 'ec' ? 'ec' : 'rsa')) {
    fail(`algorithm ${p.algorithm} does not fit the certificate key`);
  }
  const serial = cert.serialNumber.replace(/^0+(?=.)/, '');
  const issuer = cert.issuer.split('\n').reverse().join(',').replace(/ /g, '%20');
  // the serial in hex, either case (the IG example is uppercase, adorsys
  // lowercase), no leading zeros; the issuer DN in RFC 2253 order, spaces %20
  const k = /^SN=([0-9A-Fa-f]+),CA=(.+)$/.exec(p.keyId);
  if (!k || k[1].toUpperCase() !== serial.toUpperCase() || k[2] !== issuer) {
    fail(`keyId ${p.keyId} is not SN=${serial},CA=${issuer}`);
  }
  const must = ['digest', 'x-request-id'];
  for (const c of ['psu-id', 'psu-corporate-id', 'tpp-redirect-uri']) if (h[c] !== undefined) must.push(c);
  const names = p.headers;
  if ([...names].sort().join(' ') !== [...must].sort().join(' ')) {
    fail(`headers="${names.join(' ')}" is not the IG set "${must.join(' ')}"`);
  }
  const signing = names.map((n) => `${n}: ${n === '(request-target)' ? `${req.method.toLowerCase()} ${req.url}` : h[n]}`)
    .join('\n');
  const ok = crypto.verify(alg[0], Buffer.from(signing), alg[1] === 'ec' ? { key: cert.publicKey, dsaEncoding: 'der' }
    : { key: cert.publicKey, padding: crypto.constants.RSA_PKCS1_PADDING }, Buffer.from(p.signature, 'base64'));
  if (!ok) fail('crypto.verify over the rebuilt signing string failed');
  return { alg: p.algorithm, headers: names, keyId: p.keyId };
}

const server = https.createServer({
  key: pki('server.key'), cert: pki('server.pem'), ca: pki('ca.pem'), requestCert: true, rejectUnauthorized: false,
}, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    const h = req.headers;
    const georgia = req.url.includes('/georgia/');
    const scheme = georgia ? 'jws' : 'cavage';
    const verdict = { scheme, method: req.method, path: req.url, request_id: h['x-request-id'],
      verifier: georgia ? `jose ${VERSIONS.jose}` : `http-signature ${VERSIONS['http-signature']} + node crypto` };
    try {
      verdict.details = georgia ? await verifyJws(req, h, body) : verifyCavage(req, h, body);
      verdict.ok = true;
    } catch (e) {
      verdict.ok = false;
      verdict.reason = e.message;
    }
    let status = 401;
    let out = { tppMessages: [{ category: 'ERROR', code: 'SIGNATURE_INVALID', text: verdict.reason }] };
    if (verdict.ok) {
      status = req.method === 'POST' ? 201 : 200;
      out = { transactionStatus: 'RCVD', paymentId: `interop-${crypto.randomUUID()}`, _links: {} };
    }
    const text = JSON.stringify(out);
    const headers = { 'content-type': 'application/json', 'x-request-id': h['x-request-id'] || '' };
    if (georgia) {
      try { await signResponse(status, headers, text, h['x-interop-sign-with'] === 'ec'); } catch (e) { verdict.sign_error = e.message; }
    }
    log(verdict);
    res.writeHead(status, headers);
    res.end(text);
  });
});
server.listen(Number(args.port), '127.0.0.1', () => fs.writeFileSync(args.ready, `${process.pid}\n`));
server.on('error', (e) => { process.stderr.write(`bank: ${e.message}\n`); process.exit(3); });

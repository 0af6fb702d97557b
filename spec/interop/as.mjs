// A third-party OAuth 2.0 authorization server for spec/interop/oauth_spec.lua:
// panva's `oidc-provider` on 127.0.0.1 with TLS from the test PKI. PKCE is
// required (S256 only), refresh tokens are issued and rotated on every use.
// The only code of ours is the interaction: the PSU is logged in as "alice"
// and the asked scope granted, at once (no page to script).
//
// usage: node as.mjs --pki DIR --port N --client-id ID --redirect-uri URI --ready FILE
import https from 'node:https';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const pki = (n) => fs.readFileSync(`${args.pki}/${n}`);
const issuer = `https://127.0.0.1:${args.port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: args['client-id'], token_endpoint_auth_method: 'none', redirect_uris: [args['redirect-uri']],
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access'],
  features: { devInteractions: { enabled: false }, revocation: { enabled: true } },
  issueRefreshToken: async () => true,
  rotateRefreshToken: true,
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['interop-spec-only'] },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});
const callback = provider.callback();

const server = https.createServer({ key: pki('server.key'), cert: pki('server.pem'), ca: pki('ca.pem'),
  requestCert: true, rejectUnauthorized: false }, async (req, res) => {
  if (!req.url.startsWith('/interaction/')) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    const grant = new provider.Grant({ accountId: 'alice', clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { login: { accountId: 'alice' }, consent: { grantId } },
      { mergeWithLastSubmission: false });
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`interaction: ${e.message}`);
  }
  return undefined;
});
server.listen(Number(args.port), '127.0.0.1', () => fs.writeFileSync(args.ready, `${process.pid}\n`));
server.on('error', (e) => { process.stderr.write(`as: ${e.message}\n`); process.exit(3); });

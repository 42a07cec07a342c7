// A real OpenID provider for Portcullis's tests: `oidc-provider` (panva) on 127.0.0.1, with a
// minimal sign-in page of its own (user name, password, and a box to assert multi-factor
// authentication, which sets `amr`). Configuration from the environment:
//   PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
//   OIDC_USERS = {"login": {"password": "...", "claims": {"preferred_username": ..., "groups": [...]}}}
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const users = JSON.parse(process.env.OIDC_USERS || '{}');

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  pkce: { required: () => true },
  claims: {
    // amr (how the user signed in) with every ID token.
    openid: ['sub', 'amr'],
    profile: ['name', 'preferred_username', 'zoneinfo'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  conformIdTokenClaims: false,
  cookies: { keys: ['portcullis-test-cookie-key'] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => users[id] ? { accountId: id, claims: async () => ({ sub: id, ...users[id].claims }) } : undefined,
  // A first-party client: no consent screen.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email groups');
    await grant.save();
    return grant;
  },
});

const page = (uid, error) => `<!doctype html><html><head><title>Test provider sign-in</title></head><body>
<h1>Test provider</h1>${error ? `<p id="error">${error}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label>Login <input name="login" id="login"></label>
<label>Password <input name="password" id="password" type="password"></label>
<label><input type="checkbox" name="mfa" id="mfa" value="1"> second factor</label>
<button type="submit" id="submit">Sign in</button></form></body></html>`;

const form = (req) => new Promise((resolve) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => resolve(new URLSearchParams(body)));
});

const callback = provider.callback();
http.createServer(async (req, res) => {
  const m = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.setHeader('content-type', 'text/html');
      return res.end(page(details.uid));
    }
    const f = await form(req);
    const login = f.get('login');
    const user = users[login];
    if (!user || user.password !== f.get('password')) {
      res.statusCode = 401;
      res.setHeader('content-type', 'text/html');
      return res.end(page(details.uid, 'wrong login or password'));
    }
    const amr = f.get('mfa') ? ['pwd', 'mfa'] : ['pwd'];
    await provider.interactionFinished(req, res, { login: { accountId: login, amr } }, { mergeWithLastSubmission: false });
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
}).listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));

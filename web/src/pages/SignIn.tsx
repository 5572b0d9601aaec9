import { useState } from 'preact/hooks';
import { clientFor, exchange, message, ok, session, type Credential } from '../api.ts';
import { PageTitle } from '../ui/kit.tsx';

/**
 * Sign in with an API key, or with an API client (OAuth2 client credentials). The credential
 * is checked against the API first, then kept in sessionStorage only.
 */
export function SignIn(props: { onSignedIn: () => void }) {
  const [kind, setKind] = useState<'key' | 'client'>('key');
  const [key, setKey] = useState('');
  const [clientId, setClientId] = useState('');
  const [secret, setSecret] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <section class="signin" aria-labelledby="signin-title">
      <PageTitle>
        <span id="signin-title">Sign in</span>
      </PageTitle>
      <p>The credential is kept in this tab only (sessionStorage) and sent in the Authorization header, never in a link.</p>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            let cred: Credential;
            if (kind === 'key') cred = { kind: 'key', token: key.trim() };
            else cred = await exchange(clientId.trim(), secret);
            const token = cred.kind === 'key' ? cred.token : cred.accessToken;
            ok(await clientFor(token).GET('/v1/clusters', { params: { query: { limit: 1 } } }));
            session.signIn(cred);
            setKey('');
            setSecret('');
            props.onSignedIn();
          } catch (err) {
            setError(message(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <fieldset>
          <legend>Sign in with</legend>
          <div class="check">
            <input type="radio" id="signin-kind-key" name="signin-kind" checked={kind === 'key'} onChange={() => setKind('key')} />
            <label for="signin-kind-key">an API key</label>
          </div>
          <div class="check">
            <input type="radio" id="signin-kind-client" name="signin-kind" checked={kind === 'client'} onChange={() => setKind('client')} />
            <label for="signin-kind-client">an API client (OAuth2 client credentials)</label>
          </div>
        </fieldset>
        {kind === 'key' ? (
          <>
            <label for="api-key">API key</label>
            <input id="api-key" name="api-key" type="password" autoComplete="off" required value={key} onInput={(e) => setKey(e.currentTarget.value)} aria-describedby={error ? 'signin-error' : undefined} />
          </>
        ) : (
          <>
            <label for="client-id">Client id</label>
            <input id="client-id" name="client-id" autoComplete="off" spellcheck={false} required value={clientId} onInput={(e) => setClientId(e.currentTarget.value)} />
            <label for="client-secret">Client secret</label>
            <input id="client-secret" name="client-secret" type="password" autoComplete="off" required value={secret} onInput={(e) => setSecret(e.currentTarget.value)} aria-describedby={error ? 'signin-error' : undefined} />
          </>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        {error && (
          <p id="signin-error" class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </section>
  );
}

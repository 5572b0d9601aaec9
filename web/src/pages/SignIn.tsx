import { useState } from 'preact/hooks';
import { clientFor, message, ok, session } from '../api.ts';
import { PageTitle } from '../ui/kit.tsx';

/** Sign in with an API key: checked against the API, then kept in sessionStorage only. */
export function SignIn(props: { onSignedIn: () => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <section class="signin" aria-labelledby="signin-title">
      <PageTitle>
        <span id="signin-title">Sign in</span>
      </PageTitle>
      <p>Use an API key of your tenant. It is kept in this tab only (sessionStorage) and sent in the Authorization header, never in a link.</p>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            ok(await clientFor(key.trim()).GET('/v1/clusters', { params: { query: { limit: 1 } } }));
            session.signIn(key.trim());
            setKey('');
            props.onSignedIn();
          } catch (err) {
            setError(message(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" autoComplete="off" required value={key} onInput={(e) => setKey(e.currentTarget.value)} aria-describedby={error ? 'signin-error' : undefined} />
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

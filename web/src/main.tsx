/** The console's shell: skip link, banner, navigation, and the page the path names. */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { session, whenUnauthorized } from './api.ts';
import { match, navigate, usePath } from './router.ts';
import { Link } from './ui/kit.tsx';
import { Audit } from './pages/Audit.tsx';
import { Cluster } from './pages/Cluster.tsx';
import { Clusters } from './pages/Clusters.tsx';
import { Events } from './pages/Events.tsx';
import { PolicyEditor } from './pages/Policy.tsx';
import { Restore } from './pages/Restore.tsx';
import { Retention } from './pages/Retention.tsx';
import { SignIn } from './pages/SignIn.tsx';
import { Usage } from './pages/Usage.tsx';
import { Webhooks } from './pages/Webhooks.tsx';
import './styles.css';

const NAV = [
  { to: '/', label: 'Clusters' },
  { to: '/events', label: 'Events' },
  { to: '/audit', label: 'Audit' },
  { to: '/webhooks', label: 'Webhooks' },
  { to: '/usage', label: 'Usage' },
];

function Page(props: { path: string }) {
  const { path } = props;
  let m: Record<string, string> | null;
  if (path === '/' || path === '/clusters') return <Clusters />;
  if ((m = match('/clusters/:id', path))) return <Cluster id={m.id!} key={m.id} />;
  if ((m = match('/clusters/:id/retention', path))) return <Retention id={m.id!} key={m.id} />;
  if ((m = match('/clusters/:id/policy', path))) return <PolicyEditor id={m.id!} key={m.id} />;
  if ((m = match('/clusters/:id/backups/:backup/restore', path))) return <Restore id={m.id!} backupId={m.backup!} key={m.backup} />;
  if (path === '/events') return <Events />;
  if (path === '/audit') return <Audit />;
  if (path === '/webhooks') return <Webhooks />;
  if (path === '/usage') return <Usage />;
  return (
    <>
      <h1>Not found</h1>
      <p>
        No such page. <Link to="/">Go to the clusters</Link>.
      </p>
    </>
  );
}

function App() {
  const path = usePath();
  const [signedIn, setSignedIn] = useState(() => session.signedIn());
  useEffect(() => {
    whenUnauthorized(() => {
      session.signOut();
      setSignedIn(false);
    });
  }, []);
  const section = NAV.find((n) => n.to !== '/' && path.startsWith(n.to))?.to ?? '/';
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="banner">
        <p class="brand">Backups console</p>
        {signedIn && (
          <nav aria-label="Main">
            <ul>
              {NAV.map((n) => (
                <li key={n.to}>
                  <Link to={n.to} aria-current={section === n.to ? 'page' : undefined}>
                    {n.label}
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
        )}
        {signedIn && (
          <button
            type="button"
            class="signout"
            onClick={() => {
              session.signOut();
              setSignedIn(false);
              navigate('/');
            }}
          >
            Sign out
          </button>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {signedIn ? <Page path={path} key={path} /> : <SignIn onSignedIn={() => setSignedIn(true)} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);

import { Link } from '../ui/kit.tsx';

/** The pages of one cluster. */
export function ClusterNav(props: { id: string; current: 'backups' | 'retention' | 'policy' }) {
  const pages = [
    { key: 'backups', to: `/clusters/${props.id}`, label: 'Backups' },
    { key: 'retention', to: `/clusters/${props.id}/retention`, label: 'Retention' },
    { key: 'policy', to: `/clusters/${props.id}/policy`, label: 'Policy' },
  ] as const;
  return (
    <nav aria-label="Cluster" class="subnav">
      <ul>
        {pages.map((p) => (
          <li key={p.key}>
            <Link to={p.to} aria-current={p.key === props.current ? 'page' : undefined}>
              {p.label}
            </Link>
          </li>
        ))}
      </ul>
    </nav>
  );
}

import { useState } from 'preact/hooks';
import { api, ok, type Backup } from '../api.ts';
import { bytes, when } from '../ui/format.ts';
import { ErrorNote, useLoad } from '../ui/kit.tsx';

/** Browses a directory component of a completed backup, one directory at a time. */
export function Files(props: { clusterId: string; backup: Backup; components: string[] }) {
  const names = props.components.filter((n) => props.backup.artifacts.some((a) => a.component === n));
  const [component, setComponent] = useState(names[0] ?? '');
  const [dir, setDir] = useState('');
  const list = useLoad(
    async () =>
      component
        ? ok(
            await api.GET('/v1/clusters/{id}/backups/{backup_id}/files', {
              params: { path: { id: props.clusterId, backup_id: props.backup.id }, query: { component, path: dir, limit: 100 } },
            }),
          ).items
        : [],
    [props.backup.id, component, dir],
  );
  if (names.length === 0) return <p>This backup has no directory component to browse.</p>;
  const parts = dir ? dir.split('/') : [];
  return (
    <div class="files">
      <h3>Browse</h3>
      <label for="files-component">Component</label>
      <select
        id="files-component"
        value={component}
        onChange={(e) => {
          setComponent(e.currentTarget.value);
          setDir('');
        }}
      >
        {names.map((n) => (
          <option key={n} value={n}>
            {n}
          </option>
        ))}
      </select>
      <nav aria-label="Folder" class="crumbs">
        <ol>
          <li>
            <button type="button" class="linklike" onClick={() => setDir('')} aria-current={dir === '' ? 'location' : undefined}>
              {component}
            </button>
          </li>
          {parts.map((p, i) => (
            <li key={i}>
              <button type="button" class="linklike" onClick={() => setDir(parts.slice(0, i + 1).join('/'))} aria-current={i === parts.length - 1 ? 'location' : undefined}>
                {p}
              </button>
            </li>
          ))}
        </ol>
      </nav>
      <ErrorNote error={list.error} />
      {list.data && (
        <table class="file-list">
          <caption>Entries of {dir ? `${component}/${dir}` : component}</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Size</th>
              <th scope="col">Modified</th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((f) => (
              <tr key={f.name}>
                <td>
                  {f.type === 'directory' ? (
                    <button type="button" class="linklike" onClick={() => setDir(dir ? `${dir}/${f.name}` : f.name)}>
                      {f.name}/
                    </button>
                  ) : (
                    f.name
                  )}
                </td>
                <td>{f.type === 'symlink' ? `symlink to ${f.link_target ?? '?'}` : f.type}</td>
                <td>{f.type === 'file' ? bytes(f.size) : '—'}</td>
                <td>{when(f.mtime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

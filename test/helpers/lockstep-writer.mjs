// A tenant's application for the consistency test (test/consistency.test.ts): it writes sequence
// number n to a PostgreSQL table, then to a file of a directory component, n = 1, 2, 3, ...,
// as fast as it can. Asked to pause (IPC), it finishes the pair it is writing and answers
// `paused`; asked to resume, it goes on. Argv: database URL, file path.
import { writeFileSync } from 'node:fs';
import pg from 'pg';

const [url, file] = process.argv.slice(2);
const client = new pg.Client({ connectionString: url });
await client.connect();
await client.query('CREATE TABLE IF NOT EXISTS seq (n bigint PRIMARY KEY)');
let n = Number((await client.query('SELECT coalesce(max(n), 0) AS n FROM seq')).rows[0].n);
let paused = false;
let stopping = false;
let waiting = null;
process.on('message', (m) => {
  if (m === 'pause') paused = true;
  else if (m === 'resume') {
    paused = false;
    waiting?.();
  } else if (m === 'stop') {
    stopping = true;
    paused = false;
    waiting?.();
  }
});
process.send('ready');
while (!stopping) {
  if (paused) {
    process.send('paused');
    await new Promise((resolve) => (waiting = resolve));
    waiting = null;
    process.send('resumed');
    continue;
  }
  n++;
  await client.query('INSERT INTO seq VALUES ($1)', [n]);
  writeFileSync(file, `N=${n}\n`);
}
await client.end();
process.send(`stopped:${n}`);
process.disconnect();

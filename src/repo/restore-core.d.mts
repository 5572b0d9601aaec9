/** Types of restore-core.mjs (see there for what a job does). */
export interface RestoreChunk {
  id: string;
  /** The pack's file. */
  pack: string;
  offset: number;
  length: number;
  /** Plaintext length recorded, -1 when unknown. */
  rawLength: number;
}

export interface RestoreJob {
  abs: string;
  /** The manifest path, for messages. */
  path: string;
  create: boolean;
  finish: boolean;
  /** Where the first chunk goes in the file. */
  offset: number;
  chunks: RestoreChunk[];
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** mtime in seconds, as utimes takes it. */
  mtime: number;
}

export declare function restoreFiles(jobs: RestoreJob[], keys: { dataKey: Buffer; macKey: Buffer }, opts: { asRoot: boolean; now: number }): Promise<number>;

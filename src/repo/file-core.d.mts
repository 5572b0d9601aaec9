/** Types of file-core.mjs (see there for what a job does). */
import type { ChunkerOptions } from './chunker-core.mjs';
import type { DirEntry } from './types.js';

/** lstat of a file, as manifests keep it (DirEntry's metadata fields), and its device. */
export type FileStat = Pick<DirEntry, 'mode' | 'uid' | 'gid' | 'mtime_ns' | 'ctime_ns' | 'ino' | 'size'> & { dev: string };

export interface FileJob {
  abs: string;
  /** Where to read from: 0, or a continuation's `next`. */
  start?: number;
  /** The previous manifest's entry of this path (start 0 only): equal -> 'unchanged'. */
  prev?: { size: number; mtime_ns: string; ctime_ns: string; ino: string };
  /** A continuation: the stat of the first segment, which must still hold. */
  expect?: FileStat;
  /** Chunk ids not to seal (the repository is expected to hold them). */
  hints?: string[];
}

export interface FileChunk {
  id: string;
  /** Plaintext length. */
  length: number;
  /** The sealed blob; null when the id was a hint (or when sealing was not asked for). */
  blob: Buffer | null;
  /** The plaintext, only when no sealing was asked for and the id was no hint. */
  plain: Buffer | null;
}

export type FileResult =
  | { kind: 'data'; stat: FileStat; chunks: FileChunk[]; next: number | null }
  | { kind: 'unchanged'; stat: FileStat }
  | { kind: 'other' }
  | { kind: 'changed' }
  | { kind: 'deferred' }
  | { kind: 'error'; code: string };

export interface ProcessOptions {
  hash(plain: Buffer): string;
  /** null: keep the plaintext (tests' in-memory sink). What it answers becomes the chunk's `blob`. */
  seal: ((id: string, plain: Buffer) => Promise<Buffer>) | null;
  chunking: ChunkerOptions;
  /** At least 2 x chunking.maxSize. */
  segmentBytes: number;
  budgetBytes: number;
  /** Bytes a batch may read in all (at least segmentBytes + 1; default: no limit but the budget): a read past it waits for the next batch. */
  readLimit?: number;
  /** Where reads go (a read past its end gets a buffer of its own): reusable by the caller once the call has answered. */
  arena?: Buffer;
}

export declare function statOf(st: import('node:fs').BigIntStats): FileStat;
export declare function processFiles(jobs: FileJob[], opts: ProcessOptions): Promise<FileResult[]>;

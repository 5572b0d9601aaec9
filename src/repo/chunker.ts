/*
 * Content-defined chunking (FastCDC 2016): the implementation is chunker-core.mjs, plain
 * JavaScript so that the seal pool's worker threads chunk files with the same code (see the notes
 * at its top for the algorithm, the fastcdc-rs vectors it matches and its speed).
 */
export { blockCuts, checkChunkerOptions, chunkLengths, chunkStream, cutPoint, DEFAULT_CHUNKING } from './chunker-core.mjs';
export type { ChunkerOptions } from './chunker-core.mjs';

/** Types of chunker-core.mjs. */
export interface ChunkerOptions {
    minSize: number;
    avgSize: number;
    maxSize: number;
}
/** Default for the service: average about 1 MiB. */
export declare const DEFAULT_CHUNKING: ChunkerOptions;
/** Validates (min <= avg <= max, powers of two where the algorithm needs it, sane bounds); throws RangeError naming the problem. */
export declare function checkChunkerOptions(o: ChunkerOptions): void;
/**
 * The end (absolute offset, exclusive) of the chunk that starts at `start`. `data[start, end)`
 * must hold the rest of the stream, or at least `maxSize` bytes of it; `end` defaults to
 * `data.length`. Returns a value in (start, end] (start itself only when start === end).
 */
export declare function cutPoint(data: Uint8Array, start: number, end?: number, o?: ChunkerOptions): number;
/** The chunk lengths of `data[start, end)`, a block of a stream that begins at a chunk boundary; without `last`, short of a chunk that may go on in the next block. */
export declare function blockCuts(data: Uint8Array, start: number, end: number, last: boolean, o?: ChunkerOptions): number[];
/** Convenience for tests/small data: the chunk lengths of a whole buffer. */
export declare function chunkLengths(data: Uint8Array, o?: ChunkerOptions): number[];
/**
 * Streaming: yields the chunks of the concatenated input, each a Buffer, identical to chunking
 * the whole input at once. A chunk inside one input buffer is a view of it; only a chunk that
 * spans buffers is copied (once). Every byte is hashed once: the scan carries its state across
 * buffers instead of waiting for maxSize bytes. Memory: the current input buffer plus the pieces
 * of the chunk in progress (under maxSize bytes).
 */
export declare function chunkStream(source: AsyncIterable<Buffer | Uint8Array>, o?: ChunkerOptions): AsyncGenerator<Buffer>;

/** Types of seal-core.mjs (see there for the formats). Use seal.ts, which throws the typed errors. */
export declare const CHUNK_RAW: 0x10;
export declare const CHUNK_ZSTD: 0x11;
export declare const OBJECT_V1: 0x21;
export declare const SEAL_OVERHEAD: number;
export declare function chunkId(macKey: Buffer, plain: Uint8Array): string;
export declare const STREAM_ZSTD_LEVEL: number;
export declare function sealChunk(keys: { dataKey: Buffer }, id: string, plain: Buffer, level?: number): Promise<Buffer>;
/** sealChunk's blob as pieces whose concatenation is the blob. */
export declare function sealChunkParts(keys: { dataKey: Buffer }, id: string, plain: Buffer): Promise<Buffer[]>;
export declare function openChunk(keys: { dataKey: Buffer; macKey: Buffer }, id: string, blob: Buffer): Promise<Buffer>;
export declare function sealObject(dataKey: Buffer, purpose: string, plain: Buffer): Buffer;
export declare function openObject(dataKey: Buffer, purpose: string, blob: Buffer): Buffer;

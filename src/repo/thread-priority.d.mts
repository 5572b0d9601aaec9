/** Types of thread-priority.mjs (plain JavaScript: the seal pool's threads load it too). */
export function niceThisThread(nice: number): boolean;
export function niceThreadPool(nice: number, size?: number): Promise<number[]>;
export function niceWorkerThread(data: unknown): void;
export declare const DEFAULT_SEAL_NICE: number;

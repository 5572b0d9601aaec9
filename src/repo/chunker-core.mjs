// Plain JavaScript so that worker threads (which load no TypeScript) can chunk: generated once from the
// former chunker.ts by tsc and maintained here; chunker.ts re-exports it with its types (chunker-core.d.mts).
/*
 * Content-defined chunking: FastCDC as in Xia et al., "FastCDC: a Fast and Efficient
 * Content-Defined Chunking Approach for Data Deduplication" (USENIX ATC 2016): a gear rolling
 * hash, cut-point skipping of the first minSize bytes, normalized chunking (level 1: a mask with
 * one bit more than log2(avgSize) before avgSize, one bit fewer after) and a hard cut at maxSize.
 *
 * Cut points are those of fastcdc-rs `v2016` (github.com/nlfiedler/fastcdc-rs, MIT, 4.0.1) with
 * its default level 1, including its convention that the chunk ends *before* the byte whose hash
 * matched; chunker.test.ts checks its published vectors.
 *
 * Speed: the 64-bit hash is `h = (h << 1) + GEAR[b]` (wrapping). Every mask lies in bits 0..47, and
 * bit j of h depends only on the last j + 1 bytes (the byte k positions back is shifted left by
 * k; carries only go up), so the low 32 bits of h are a 32-bit gear hash of their own, and the hot
 * loop keeps just that. Only when the low half of the mask matches (1 in 2^10 or fewer bytes at
 * the default sizes) are bits 32..47 recomputed exactly from the last 48 bytes. The loop takes eight
 * bytes per branch. Measured (Node 20, one core of a shared AMD EPYC, random data, default sizes):
 * chunkLengths about 1.0-1.3 GB/s, chunkStream 0.7-1.0 GB/s from 64 KiB buffers (the copy of each
 * chunk that spans buffers) and 1.1-1.2 GB/s from 16 MiB buffers.
 */
/** Default for the service: average about 1 MiB. */
export const DEFAULT_CHUNKING = Object.freeze({ minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 });
// The bounds fastcdc-rs v2016 asserts (MINIMUM_MIN ... MAXIMUM_MAX); the masks exist for them.
const MIN_SIZE_BOUNDS = [64, 1024 * 1024];
const AVG_SIZE_BOUNDS = [256, 4 * 1024 * 1024];
const MAX_SIZE_BOUNDS = [1024, 16 * 1024 * 1024];
/*
 * GEAR and MASKS are data from fastcdc-rs src/v2016/mod.rs. GEAR[i] is the high 8 bytes (big
 * endian) of MD5 of 64 bytes of value i (its examples/table64.rs; the test derives it again).
 * MASKS[n] has n one-bits spread out (destor's C reference up to 128 KiB, restic's above).
 */
// prettier-ignore
const GEAR_HEX = ('3b5d3c7d207e37dc 784d68ba91123086 cd52880f882e7298 eacf8e4e19fdcca7 c31f385dfbd1632b 1d5f27001e25abe6 83130bde3c9ad991 c4b225676e9b7649 ' +
    'aa329b29e08eb499 b67fcbd21e577d58 0027baaada2acf6b e3ef2d5ac73c2226 0890f24d6ed312b7 a809e036851d7c7e f0a6fe5e0013d81b 1d026304452cec14 ' +
    '03864632648e248f cdaacf3dcd92b9b4 f5e012e63c187856 8862f9d3821c00b6 a82f7338750f6f8a 1e583dc6c1cb0b6f 7a3145b69743a7f1 abb20fee404807eb ' +
    'b14b3cfe07b83a5d b9dc27898adb9a0f 3703f5e91baa62be cf0bb866815f7d98 3d9867c41ea9dcd3 1be1fa65442bf22c 14300da4c55631d9 e698e9cbc6545c99 ' +
    '4763107ec64e92a5 c65821fc65696a24 76196c064822f0b7 485be841f3525e01 f652bc9c85974ff5 cad8352face9e3e9 2a6ed1dceb35e98e c6f483badc11680f ' +
    '3cfd8c17e9cf12f1 89b83c5e2ea56471 ae665cfd24e392a9 ec33c4e504cb8915 3fb9b15fc9fe7451 d7fd1fd1945f2195 31ade0853443efd8 255efc9863e1e2d2 ' +
    '10eab6008d5642cf 46f04863257ac804 a52dc42a789a27d3 daaadf9ce77af565 6b479cd53d87febb 6309e2d3f93db72f c5738ffbaa1ff9d6 6bd57f3f25af7968 ' +
    '67605486d90d0a4a e14d0b9663bfbdae b7bbd8d816eb0414 def8a4f16b35a116 e7932d85aaaffed6 08161cbae90cfd48 855507beb294f08b 91234ea6ffd399b2 ' +
    'ad70cf4b2435f302 d289a97565bc2d27 8e558437ffca99de 96d2704b7115c040 0889bbcdfc660e41 5e0d4e67dc92128d 72a9f8917063ed97 438b69d409e016e3 ' +
    'df4fed8a5d8a4397 00f41dcf41d403f7 4814eb038e52603f 9dafbacc58e2d651 fe2f458e4be170af 4457ec414df6a940 06e62f1451123314 bd1014d173ba92cc ' +
    'def318e25ed57760 9fea0de9dfca8525 459de1e76c20624b aeec189617e2d666 126a2c06ab5a83cb b1321532360f6132 65421503dbb40123 2d67c287ea089ab3 ' +
    '6c93bff5a56bd6b6 4ffb2036cab6d98d ce7b785b1be7ad4f edb42ef6189fd163 dc905288703988f6 365f9c1d2c691884 c640583680d99bfe 3cd4624c07593ec6 ' +
    '7f1ea8d85d7c5805 014842d480b57149 0b649bcb5a828688 bcd5708ed79b18f0 e987c862fbd2f2f0 982731671f0cd82c baf13e8b16d8c063 8ea3109cbd951bba ' +
    'd141045bfb385cad 2acbc1a0af1f7d30 e6444d89df03bfdf a18cc771b8188ff9 9834429db01c39bb 214add07fe086a1f 8f07c19b1f6b3ff9 56a297b1bf4ffe55 ' +
    '94d558e493c54fc7 40bfc24c764552cb 931a706f8a8520cb 32229d322935bd52 2560d0f5dc4fefaf 9dbcc48355969bb6 0fd81c3985c0b56a e03817e1560f2bda ' +
    'c1bb4f81d892b2d5 b0c4864f4e28d2d7 3ecc49f9d9d6c263 51307e99b52ba65e 8af2b688da84a752 f5d72523b91b20b6 6d95ff1ff4634806 562f21555458339a ' +
    'c0ce47f889336346 487823e5089b40d8 e4727c7ebc6d9592 5a8f7277e94970ba fca2f406b1c8bb50 5b1f8a95f1791070 d304af9fc9028605 5440ab7fc930e748 ' +
    '312d25fbca2ab5a1 10f4a4b234a4d575 90301d55047e7473 3b6372886c61591e 293402b77c444e06 451f34a4d3e97dd7 3158d814d81bc57b 034942425b9bda69 ' +
    'e2032ff9e532d9bb 62ae066b8b2179e5 9545e10c2f8d71d8 7ff7483eb2d23fc0 00945fcebdc98d86 8764bbbe99b26ca2 1b1ec62284c0bfc3 58e0fcc4f0aa362b ' +
    '5f4abefa878d458d fd74ac2f9607c519 a4e3fb37df8cbfa9 bf697e43cac574e5 86f14a3f68f4cd53 24a23d076f1ce522 e725cd8048868cc8 bf3c729eb2464362 ' +
    'd8f6cd57b3cc1ed8 6329e52425541577 62aa688ad5ae1ac0 0a242566269bf845 168b1a4753aca74b f789afefff2e7e3c 6c3362093b6fccdb 4ce8f50bd28c09b2 ' +
    '006a2db95ae8aa93 975b0d623c3d1a8c 18605d3935338c5b 5bb6f6136cad3c71 0f53a20701f8d8a6 ab8c5ad2e7e93c67 40b5ac5127acaa29 8c7bf63c2075895f ' +
    '78bd9f7e014a805c b2c9e9f4f9c8c032 efd6049827eb91f3 2be459f482c16fbd d92ce0c5745aaa8c 0aaa8fb298d965b9 2b37f92c6c803b15 8c54a5e94e0f0e78 ' +
    '95f9b6e90c0a3032 e7939faa436c7874 d16bfe8f6a8a40c9 44982b86263fd2fa e285fb39f984e583 779a8df72d7619d3 f2d79a8de8d5dd1e d1037354d66684e2 ' +
    '004c82a4e668a8e5 31d40a7668b044e6 d70578538bd02c11 db45431078c5f482 977121bb7f6a51ad 73d5ccbd34eff8dd e437a07d356e17cd 47b2782043c95627 ' +
    '9fb251413e41d49a ccd70b60652513d3 1c95b31e8a1b49b2 cae73dfd1bcb4c1b 34d98331b1f5b70f 784e39f22338d92f 18613d4a064df420 f1d8dae25f0bcebe ' +
    '33f77c15ae855efc 3c88b3b912eb109c 956a2ec96bafeea5 1aa005b5e0ad0e87 5500d70527c4bb8e e36c57196421cc44 13c4d286cc36ee39 5654a23d818b2a81 ' +
    '77b1dc13d161abdc 734f44de5f8d5eb5 60717e174a6c89a2 d47d9649266a211e 5b13a4322bb69e90 f7669609f8b5fc3c 21e6ac55bedcdac9 9b56b62b61166dea ' +
    'f48f66b939797e9c 35f332f9c0e6ae9a cc733f6a9a878db0 3da161e41cc108c2 b7d74ae535914d51 4d493b0b11d36469 ce264d1dfba9741a a9d1f2dc7436dc06 ' +
    '70738016604c2a27 231d36e96e93f3d5 7666881197838d19 4a2a83090aaad40c f1e761591668b35d 7363236497f730a7 301080e37379dd4d 502dea2971827042 ' +
    'c2c5eb858f32625f 786afb9edfafbdff daee0d868490b2a4 617366b3268609f6 ae0e35a0fe46173e d1a07de93e824f11 079b8b115ea4cca8 93a99274558faebb ' +
    'fb1e6e22e08a03b3 ea635fdba3698dd0 cf53659328503a5c cde3b31e6fd5d780 8e3e4221d3614413 ef14d0d86bf1a22c e1d830d3f16c5ddb aabd2b2a451504e1').split(' ');
/** MASKS[5..25] of fastcdc-rs; index = number of one-bits. */
// prettier-ignore
const MASKS_HEX = {
    5: '0000000001804110', 6: '0000000001803110', 7: '0000000018035100', 8: '0000001800035300',
    9: '0000019000353000', 10: '0000590003530000', 11: '0000d90003530000', 12: '0000d90103530000',
    13: '0000d90303530000', 14: '0000d90313530000', 15: '0000d90f03530000', 16: '0000d90303537000',
    17: '0000d90703537000', 18: '0000d90707537000', 19: '0000d91707537000', 20: '0000d91747537000',
    21: '0000d91767537000', 22: '0000d93767537000', 23: '0000d93777537000', 24: '0000d93777577000',
    25: '0000db3777577000',
};
const TWO_32 = 2 ** 32;
const TWO_48 = 2 ** 48;
/** Bits 32..47 of a hash depend on at most this many trailing bytes. */
const WINDOW = 48;
/** Low 32 bits of GEAR, as int32 (the hot loop's table). */
const GEAR_LO = new Int32Array(256);
/** GEAR mod 2^48, exact in a double (the slow path's table). */
const GEAR_48 = new Float64Array(256);
for (let i = 0; i < 256; i++) {
    const hex = GEAR_HEX[i];
    GEAR_LO[i] = parseInt(hex.slice(8), 16) | 0;
    GEAR_48[i] = parseInt(hex.slice(4), 16);
}
function maskHalves(bits) {
    const hex = MASKS_HEX[bits];
    const hi = parseInt(hex.slice(0, 8), 16);
    const lo = parseInt(hex.slice(8), 16);
    // The 48-byte window of highBitsClear and the sign test of scanRun rely on these.
    if (hi >= 0x10000 || lo >= 0x80000000)
        throw new Error(`mask ${hex} has a bit above 47 or bit 31`);
    return [lo, hi];
}
const paramsCache = new WeakMap();
function paramsOf(o) {
    const cached = paramsCache.get(o);
    // Options objects may be mutated; a stale entry must not survive that.
    if (cached && cached.min === o.minSize && cached.avg === o.avgSize && cached.max === o.maxSize)
        return cached;
    checkChunkerOptions(o);
    const bits = Math.log2(o.avgSize);
    const [sLo, sHi] = maskHalves(bits + 1);
    const [lLo, lHi] = maskHalves(bits - 1);
    const p = { min: o.minSize, avg: o.avgSize, max: o.maxSize, sLo, sHi, lLo, lHi };
    paramsCache.set(o, p);
    return p;
}
/** Validates (min <= avg <= max, powers of two where the algorithm needs it, sane bounds); throws RangeError naming the problem. */
export function checkChunkerOptions(o) {
    const sizes = [
        ['minSize', o?.minSize, MIN_SIZE_BOUNDS],
        ['avgSize', o?.avgSize, AVG_SIZE_BOUNDS],
        ['maxSize', o?.maxSize, MAX_SIZE_BOUNDS],
    ];
    for (const [name, v, [lo, hi]] of sizes) {
        if (typeof v !== 'number' || !Number.isSafeInteger(v))
            throw new RangeError(`chunker ${name} must be an integer, got ${String(v)}`);
        if (v < lo || v > hi)
            throw new RangeError(`chunker ${name} must be within [${lo}, ${hi}], got ${v}`);
    }
    // The masks are chosen by log2(avgSize); fastcdc-rs rounds other values, which would silently
    // chunk at a different average than asked for.
    if ((o.avgSize & (o.avgSize - 1)) !== 0)
        throw new RangeError(`chunker avgSize must be a power of two, got ${o.avgSize}`);
    if (o.minSize > o.avgSize)
        throw new RangeError(`chunker minSize (${o.minSize}) must not exceed avgSize (${o.avgSize})`);
    if (o.avgSize > o.maxSize)
        throw new RangeError(`chunker avgSize (${o.avgSize}) must not exceed maxSize (${o.maxSize})`);
}
/**
 * Whether bits 32..47 of the hash at `data[i]` clear `maskHi`. The hash started (at 0) with the
 * byte at `hashStart`; positions below 0 are read from `prev`, the bytes just before `data[0]`.
 */
function highBitsClear(data, i, hashStart, prev, maskHi) {
    if (maskHi === 0)
        return true;
    let h = 0;
    for (let k = Math.max(hashStart, i - (WINDOW - 1)); k <= i; k++) {
        const b = k >= 0 ? data[k] : prev[prev.length + k];
        h = h * 2 + GEAR_48[b]; // < 3 * 2^48: exact
        if (h >= TWO_48)
            h -= TWO_48;
        if (h >= TWO_48)
            h -= TWO_48;
    }
    return (Math.floor(h / TWO_32) & maskHi) === 0;
}
/** The low hash half after the last `scanRun`: a second return value without an allocation. */
let scanLo = 0;
/**
 * Looks for the first cut in `data[from, to)`: a position whose hash clears MaskS (below
 * `center`) or MaskL (from `center` on). `lo` is the low hash half before `from`. Returns the
 * position, or -1 (and leaves the hash state in `scanLo`).
 */
function scan(data, from, to, center, lo, p, hashStart, prev) {
    const sEnd = center < to ? center : to;
    if (from < sEnd) {
        const cut = scanRun(data, from, sEnd, lo, p.sLo, p.sHi, hashStart, prev);
        if (cut >= 0)
            return cut;
        lo = scanLo;
        from = sEnd;
    }
    if (from < to)
        return scanRun(data, from, to, lo, p.lLo, p.lHi, hashStart, prev);
    scanLo = lo;
    return -1;
}
/**
 * The first position in `data[i, end)` whose hash clears the mask (`mLo`, `mHi`), or -1; the hash
 * state after it (or after `end`) is left in `scanLo`.
 *
 * Eight bytes per round with one branch: `(h & mLo) - 1` is negative exactly when `h & mLo` is 0,
 * as no mask has bit 31 set. A round with a candidate is walked again byte by byte.
 */
function scanRun(data, i, end, lo, mLo, mHi, hashStart, prev) {
    const g = GEAR_LO;
    for (;;) {
        for (; i + 8 <= end; i += 8) {
            const h1 = ((lo << 1) + g[data[i]]) | 0;
            const h2 = ((h1 << 1) + g[data[i + 1]]) | 0;
            const h3 = ((h2 << 1) + g[data[i + 2]]) | 0;
            const h4 = ((h3 << 1) + g[data[i + 3]]) | 0;
            const h5 = ((h4 << 1) + g[data[i + 4]]) | 0;
            const h6 = ((h5 << 1) + g[data[i + 5]]) | 0;
            const h7 = ((h6 << 1) + g[data[i + 6]]) | 0;
            const h8 = ((h7 << 1) + g[data[i + 7]]) | 0;
            if (((h1 & mLo) - 1 | (h2 & mLo) - 1 | (h3 & mLo) - 1 | (h4 & mLo) - 1 | (h5 & mLo) - 1 | (h6 & mLo) - 1 | (h7 & mLo) - 1 | (h8 & mLo) - 1) < 0)
                break;
            lo = h8;
        }
        // A round with a candidate, or the last few bytes: one at a time.
        const stop = i + 8 <= end ? i + 8 : end;
        for (; i < stop; i++) {
            lo = ((lo << 1) + g[data[i]]) | 0;
            if ((lo & mLo) === 0 && highBitsClear(data, i, hashStart, prev, mHi)) {
                scanLo = lo;
                return i;
            }
        }
        if (i >= end) {
            scanLo = lo;
            return -1;
        }
    }
}
/**
 * The end (absolute offset, exclusive) of the chunk that starts at `start`. `data[start, end)`
 * must hold the rest of the stream, or at least `maxSize` bytes of it; `end` defaults to
 * `data.length`. Returns a value in (start, end] (start itself only when start === end).
 */
export function cutPoint(data, start, end = data.length, o = DEFAULT_CHUNKING) {
    const p = paramsOf(o);
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= data.length)) {
        throw new RangeError(`cutPoint range [${start}, ${end}) is not within the ${data.length} bytes given`);
    }
    const limit = Math.min(start + p.max, end);
    const from = start + p.min;
    if (from >= limit)
        return limit;
    const cut = scan(data, from, limit, start + p.avg, 0, p, from, null);
    return cut < 0 ? limit : cut;
}
/**
 * The chunks of one block of a stream (writer.ts writeStream): `data[start, end)` begins at a
 * chunk boundary. With `last` the stream ends at `end` and every byte is cut; otherwise the cuts
 * stop before a chunk that may go on in the next block (one that reaches `end` short of maxSize),
 * whose bytes (`end` - the lengths' sum, under maxSize) begin the next block.
 */
export function blockCuts(data, start, end, last, o = DEFAULT_CHUNKING) {
    const lengths = [];
    for (let at = start; at < end;) {
        const cut = cutPoint(data, at, end, o);
        if (!last && cut === end && end - at < o.maxSize)
            break;
        lengths.push(cut - at);
        at = cut;
    }
    return lengths;
}
/** Convenience for tests/small data: the chunk lengths of a whole buffer. */
export function chunkLengths(data, o = DEFAULT_CHUNKING) {
    const lengths = [];
    for (let start = 0; start < data.length;) {
        const cut = cutPoint(data, start, data.length, o);
        lengths.push(cut - start);
        start = cut;
    }
    return lengths;
}
function asBuffer(u) {
    return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
/**
 * Streaming: yields the chunks of the concatenated input, each a Buffer, identical to chunking
 * the whole input at once. A chunk inside one input buffer is a view of it; only a chunk that
 * spans buffers is copied (once). Every byte is hashed once: the scan carries its state across
 * buffers instead of waiting for maxSize bytes. Memory: the current input buffer plus the pieces
 * of the chunk in progress (under maxSize bytes).
 */
export async function* chunkStream(source, o = DEFAULT_CHUNKING) {
    const p = paramsOf(o);
    /** The chunk in progress: its earlier pieces (all scanned), their length, the hash state. */
    let parts = [];
    let partsLen = 0;
    let lo = 0;
    /** The last bytes (up to WINDOW) of `parts`, for highBitsClear. */
    let prev = null;
    /** parts[0] is a view of the end of a larger input buffer. */
    let suffixPending = false;
    for await (const input of source) {
        const buf = asBuffer(input);
        const n = buf.length;
        if (n === 0)
            continue;
        if (suffixPending) {
            // The chunk goes on in this buffer: copy the tail of the previous one so that it does not
            // keep the whole of that buffer alive (the memory bound above).
            parts[0] = Buffer.from(parts[0]);
            suffixPending = false;
        }
        let pos = 0;
        while (pos < n) {
            const base = pos - partsLen; // where the chunk in progress starts, in buf's coordinates
            const hashStart = base + p.min;
            const limit = Math.min(base + p.max, n);
            const from = Math.max(pos, hashStart);
            let cut = -1;
            if (from < limit) {
                cut = scan(buf, from, limit, base + p.avg, lo, p, hashStart, prev);
                lo = scanLo;
            }
            if (cut < 0 && base + p.max <= n)
                cut = base + p.max;
            if (cut >= 0) {
                const tail = buf.subarray(pos, cut);
                yield partsLen === 0 ? tail : Buffer.concat([...parts, tail], partsLen + tail.length);
                parts = [];
                partsLen = 0;
                lo = 0;
                prev = null;
                pos = cut;
            }
            else {
                // Keep the rest for the next buffer (a view: it may be the last chunk).
                const rest = buf.subarray(pos);
                parts.push(rest);
                suffixPending = pos > 0;
                partsLen += rest.length;
                prev = lastBytes(prev, rest);
                pos = n;
            }
        }
    }
    if (partsLen > 0)
        yield parts.length === 1 ? parts[0] : Buffer.concat(parts, partsLen);
}
/** The last WINDOW bytes of `prev` followed by `next`. */
function lastBytes(prev, next) {
    if (next.length >= WINDOW)
        return Buffer.from(next.subarray(next.length - WINDOW));
    const joined = prev ? Buffer.concat([prev, next]) : Buffer.from(next);
    return joined.length > WINDOW ? joined.subarray(joined.length - WINDOW) : joined;
}

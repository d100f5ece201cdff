"""Deterministic mutations of index files, and a replay that loads each one.

Used by test_file_fuzz.py (which runs ``python file_mutations.py --replay DIR`` in a child process
under an address-space limit) and by fuzz/fuzz_load.py (the checksum fixer).

A mutated file may load (e.g. a flipped code byte with a recomputed checksum is a valid index);
otherwise it must raise ValueError (corrupt content) or OSError (the operating system refused).
Anything else — another exception type, a crash, an allocation the address-space limit refuses
(MemoryError) — is a failure.
"""

from __future__ import annotations

import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from robust_helpers import (  # noqa: E402
    HEADER_END,
    OFF_FLAGS,
    OFF_ID_FLAGS,
    OFF_M,
    OFF_NBITS,
    OFF_NTOTAL,
    U32_FIELDS,
    U64_FIELDS,
    index_bytes,
    make_index,
    set_u32,
    set_u64,
    v2_offsets,
)

U32_EXTREMES = (
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    15,
    16,
    17,
    255,
    256,
    257,
    2**16,
    2**16 + 1,
    2**24,
    2**24 + 1,
    2**31 - 1,
    2**31,
    2**32 - 1,
)
U64_EXTREMES = (0, 1, 2, 39, 41, 2**31, 2**32, 2**40, 2**56, 2**56 + 1, 2**63 - 1, 2**63, 2**64 - 1)


def fix_checksum(data: bytearray) -> bytearray:
    """Recomputes the trailing XXH64 so that a mutation reaches the checks behind the checksum."""
    from spqindex import _core

    if len(data) >= 8:
        struct.pack_into("<Q", data, len(data) - 8, _core.xxh64(bytes(data[:-8])))
    return data


def base_files(rng: np.random.Generator):
    """Small valid files: user ids (M=4, nbits=4, 40 rows), padding bits (M=3, nbits=4),
    nbits=3 with assigned ids, 8-bit codes with their codeword order, and an empty index."""
    return {
        "explicit": index_bytes(make_index("explicit", rng, 40)),
        "pad": index_bytes(make_index("pad", rng, 9)),
        "nbits3": index_bytes(make_index("nbits3", rng, 6)),
        "empty": index_bytes(make_index("seq", rng, 0)),
        "grouped8": index_bytes(make_index("grouped8", rng, 70)),
    }


def mutations(seed: int = 0, havoc: int = 8000):
    """Yields (label, bytes). About 18,600 files for the defaults."""
    rng = np.random.default_rng(seed)
    bases = base_files(rng)
    main = bases["explicit"]
    n = len(main)
    # 1. every truncation of the main file, and of the others at a stride
    for cut in range(n):
        yield f"truncate:{cut}", main[:cut]
    for name, data in bases.items():
        if name != "explicit":
            for cut in range(0, len(data), 7):
                yield f"truncate-{name}:{cut}", data[:cut]
    # 2. every single bit flip of the main file
    for bit in range(8 * n):
        d = bytearray(main)
        d[bit // 8] ^= 1 << (bit % 8)
        yield f"bitflip:{bit}", bytes(d)
    # 3. header fields set to extremes, with and without a valid checksum
    for name, data in bases.items():
        for off in U32_FIELDS:
            for v in U32_EXTREMES:
                for fix in (False, True):
                    d = bytearray(data)
                    set_u32(d, off, v)
                    yield f"u32-{name}@{off}={v}{'+sum' if fix else ''}", bytes(fix_checksum(d) if fix else d)
        for off in U64_FIELDS:
            for v in U64_EXTREMES:
                for fix in (False, True):
                    d = bytearray(data)
                    set_u64(d, off, v)
                    yield f"u64-{name}@{off}={v}{'+sum' if fix else ''}", bytes(fix_checksum(d) if fix else d)
    # 4. lengths pointing past the end, or short of it: ntotal claims more/fewer rows and the
    #    file is either left alone or resized to what the header now implies (zeros appended)
    for name, data in bases.items():
        for delta in (-40, -2, -1, 1, 2, 3, 64, 10**6):
            ntotal = struct.unpack_from("<Q", data, OFF_NTOTAL)[0] + delta
            if ntotal < 0:
                continue
            for resize in (False, True):
                d = bytearray(data)
                set_u64(d, OFF_NTOTAL, ntotal)
                if resize:
                    want = _implied_size(d)
                    if want is None or want > 64 << 20:
                        continue
                    d = d[:want] if want <= len(d) else d + bytes(want - len(d))
                yield f"ntotal-{name}{delta:+d}{'-resized' if resize else ''}", bytes(fix_checksum(d))
    # 5. semantic corruption behind a valid checksum: NaN/Inf codebooks, codes with padding
    #    bits, ids out of range / duplicated / negative, unknown id mode
    for name, data in bases.items():
        for label, d in _semantic(bytearray(data), rng):
            yield f"semantic-{name}:{label}", bytes(fix_checksum(d))
    # 6. havoc: 1..16 random byte edits, half of them with the checksum fixed
    keys = list(bases)
    for i in range(havoc):
        d = bytearray(bases[keys[i % len(keys)]])
        for _ in range(int(rng.integers(1, 17))):
            op = int(rng.integers(4))
            pos = int(rng.integers(len(d))) if d else 0
            if op == 0 and d:
                d[pos] = int(rng.integers(256))
            elif op == 1 and d:
                d[pos] ^= 1 << int(rng.integers(8))
            elif op == 2:
                d[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
            elif d:
                del d[pos : pos + int(rng.integers(1, 9))]
        yield f"havoc:{i}", bytes(fix_checksum(d) if i % 2 else d)


def _ids_stored(d: bytearray) -> bool:
    return bool(struct.unpack_from("<I", d, OFF_ID_FLAGS)[0] & 1)


def _grouped(d: bytearray) -> bool:
    return bool(struct.unpack_from("<I", d, OFF_ID_FLAGS)[0] & 4)


def _implied_size(d: bytearray):
    dim, M, nbits = struct.unpack_from("<III", d, 16)
    ntotal = struct.unpack_from("<Q", d, OFF_NTOTAL)[0]
    if not (1 <= nbits <= 8 and M >= 1):
        return None
    _, ids_off = v2_offsets(dim, M, nbits, ntotal, _grouped(d))
    return ids_off + (8 * ntotal if _ids_stored(d) else 0) + 8


def _semantic(d: bytearray, rng):
    dim, M, nbits = struct.unpack_from("<III", d, 16)
    ntotal = struct.unpack_from("<Q", d, OFF_NTOTAL)[0]
    K = 1 << nbits
    cs = (M * nbits + 7) // 8
    codes_off, ids_off = v2_offsets(dim, M, nbits, ntotal, _grouped(d))
    for bad in (float("nan"), float("inf"), float("-inf")):
        e = bytearray(d)
        struct.pack_into("<f", e, HEADER_END + 4 * int(rng.integers(K * dim)), bad)
        yield f"codebook={bad}", e
    for flags in (3, 7, 2**31):
        e = bytearray(d)
        set_u32(e, OFF_FLAGS, flags)
        yield f"flags={flags}", e
    for flags in (0, 1, 2, 3, 4, 2**31):  # ids stored / ascending bits, unknown bits
        e = bytearray(d)
        set_u32(e, OFF_ID_FLAGS, flags)
        yield f"id-flags={flags}", e
    if ntotal:
        e = bytearray(d)
        # padding bit of row 0 (a valid code when M*nbits % 8 == 0): the last byte of its FAISS
        # row, which the block layout keeps at record cs-1 (nbits 4), M-1 (nbits 8) or in place
        last = {4: codes_off + (cs - 1) * 64, 8: codes_off + (M - 1) * 64}.get(nbits, codes_off + cs - 1)
        e[last] |= 0x80
        yield "code-padding", e
        if ntotal % 64:  # a nonzero code in a padding row of the last block
            e = bytearray(d)
            e[ids_off - 1] |= 0x01
            yield "padding-row", e
    if ntotal and _ids_stored(d):
        ids = list(struct.unpack_from(f"<{ntotal}q", d, ids_off))
        variants = {
            "id-negative": [-1] + ids[1:],
            "id-max": ids[:-1] + [2**63 - 1],
            "id-dup": ids[:-1] + ids[:1],
            "ids-reversed": ids[::-1],
        }
        for label, new in variants.items():
            e = bytearray(d)
            struct.pack_into(f"<{ntotal}q", e, ids_off, *new)
            yield label, e
        e = bytearray(d)
        set_u64(e, OFF_NTOTAL + 8, 0)  # next id 0 < the stored ids
        yield "next-id-0", e
    if _grouped(d):  # the codeword order: a repeated entry, and the flag without it
        e = bytearray(d)
        e[HEADER_END + 4 * K * dim + 1] = e[HEADER_END + 4 * K * dim]
        yield "order-not-permutation", e
        e = bytearray(d)
        set_u32(e, OFF_ID_FLAGS, struct.unpack_from("<I", d, OFF_ID_FLAGS)[0] & ~4)
        yield "order-flag-cleared", e
    order_end = HEADER_END + 4 * K * dim + (256 * M if _grouped(d) else 0)
    for pad in range(order_end, codes_off, 5):  # alignment padding is not data
        e = bytearray(d)
        e[pad] = 0xAB
        yield f"pad-byte:{pad}", e
    e = bytearray(d)
    set_u32(e, OFF_NBITS, 8 if nbits != 8 else 4)
    yield "nbits-changed", e
    e = bytearray(d)
    set_u32(e, OFF_M, M * 2)
    yield "M-doubled", e


def load_outcome(path: str, mmap: bool, verify: bool = True) -> str:
    """'ok', 'ValueError' or 'OSError'; anything else propagates (a test failure). verify=False
    skips the content checks, so a corrupted index may load: it must still work safely."""
    import spqindex

    try:
        index = spqindex.Index.load(path, mmap=mmap, verify=verify)
    except ValueError:
        return "ValueError"
    except OSError:
        return "OSError"
    # A file that loads must be a working index.
    q = np.zeros((2, index.dim), np.float32)
    D, I = index.search(q, 3)
    if I.shape != (2, 3) or len(index.ids) != len(index):
        raise AssertionError("a loaded index is inconsistent")
    if len(index):
        index.reconstruct(index.ids[:1])
    return "ok"


def replay(workdir: str, seed: int = 0, havoc: int = 8000, as_headroom: int = 64 << 20) -> dict:
    """Loads every mutation (read, mapped, mapped without verification) under an address-space limit of the current size
    plus `as_headroom`, so any allocation the file does not justify fails loudly."""
    import resource

    import spqindex

    spqindex.Index.load  # noqa: B018 - import everything before measuring
    cases = list(mutations(seed, havoc))
    path = os.path.join(workdir, "mutant.spq")
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    from robust_helpers import UNDER_ASAN

    if not UNDER_ASAN:  # ASan's allocator reserves address space as it goes
        resource.setrlimit(resource.RLIMIT_AS, (vm + as_headroom, resource.RLIM_INFINITY))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outcomes: dict = {}  # verified loads
    unverified: dict = {}
    failures = []
    for label, data in cases:
        with open(path, "wb") as f:
            f.write(data)
        for mmap, verify in ((False, True), (True, True), (True, False)):
            try:
                out = load_outcome(path, mmap, verify)
            except BaseException as e:  # noqa: BLE001 - reported to the parent test
                failures.append(f"{label} mmap={mmap} verify={verify}: {type(e).__name__}: {e}")
                continue
            tally = outcomes if verify else unverified
            tally[out] = tally.get(out, 0) + 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    limit_effective = False
    if not UNDER_ASAN:
        try:  # the limit must really be in force, or the memory bound proves nothing
            bytearray(as_headroom)
        except MemoryError:
            limit_effective = True
    return {
        "files": len(cases),
        "loads": 2 * len(cases),
        "outcomes": outcomes,
        "unverified_loads": len(cases),
        "unverified_outcomes": unverified,
        "failures": failures[:50],
        "n_failures": len(failures),
        "peak_rss_growth": peak - rss0,
        "as_limit_headroom": as_headroom,
        "limit_effective": limit_effective,
    }


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--replay", required=True, metavar="DIR")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--havoc", type=int, default=8000)
    args = ap.parse_args()
    import faulthandler

    faulthandler.enable()
    print(json.dumps(replay(args.replay, args.seed, args.havoc)))

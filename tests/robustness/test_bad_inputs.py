"""One table of bad inputs over every public entry point.

Each row must raise the documented exception type (ValueError for shapes and values, TypeError
for dtypes and argument types, OSError subclasses for paths, KeyError for unknown ids,
RuntimeError for mutating a read-only index, MemoryError for results that cannot be allocated),
with a message that names the offending argument, and must leave the index byte-identical
(the saved file before and after the call is compared)."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

import spqindex
from robust_helpers import index_bytes, make_index

F32 = np.float32
GOOD_CB = np.random.default_rng(7).standard_normal((4, 16, 2)).astype(F32)


def vecs(n=5, dim=8, dtype=F32, fill=None):
    x = np.random.default_rng(3).standard_normal((n, dim)).astype(dtype)
    if fill is not None:
        x[n // 2, dim // 2] = fill
    return x


def cb(shape=(4, 16, 2), dtype=F32, fill=None):
    c = np.random.default_rng(5).standard_normal(shape)
    if fill is not None and c.size:
        c.flat[c.size // 2] = fill
    return c.astype(dtype)


def write(ctx, name, data: bytes):
    p = ctx.tmp / name
    p.write_bytes(data)
    return str(p)


def truncated(ctx):
    good = index_bytes(ctx.ix)
    return write(ctx, "trunc.spq", good[: len(good) // 2])


def flipped(ctx):
    data = bytearray(index_bytes(ctx.ix))
    data[len(data) // 2] ^= 0x10
    return write(ctx, "flip.spq", bytes(data))


def cli(*argv):
    """Runs the command line in-process; argparse errors exit with status 2, handled errors
    return 1. Either way the message goes to stderr, which the test inspects."""
    from spqindex.cli import main

    rc = main(list(argv))
    if rc:
        raise SystemExit(rc)


def unwritable_dir(ctx):
    d = ctx.tmp / "ro"
    d.mkdir()
    d.chmod(0o500)
    return str(d / "x.spq")


Idx = spqindex.Index
# (id, index kind, call(ctx), exception type, text the message must contain)
CASES = [
    # --- Index(codebooks, metric) ---------------------------------------------------------
    ("Index/cb-int32", "seq", lambda c: Idx(cb(dtype=np.int32)), TypeError, "codebooks"),
    ("Index/cb-bool", "seq", lambda c: Idx(cb() > 0), TypeError, "codebooks"),
    ("Index/cb-complex", "seq", lambda c: Idx(cb(dtype=np.complex64)), TypeError, "codebooks"),
    ("Index/cb-object", "seq", lambda c: Idx(cb().astype(object)), TypeError, "codebooks"),
    ("Index/cb-str", "seq", lambda c: Idx("codebooks.npy"), TypeError, "codebooks"),
    ("Index/cb-None", "seq", lambda c: Idx(None), TypeError, "codebooks"),
    ("Index/cb-ragged", "seq", lambda c: Idx([[[1.0]], [[1.0, 2.0]]]), TypeError, "codebooks"),
    ("Index/cb-2d", "seq", lambda c: Idx(cb((16, 2))), ValueError, "codebooks"),
    ("Index/cb-4d", "seq", lambda c: Idx(cb((1, 4, 16, 2))), ValueError, "codebooks"),
    ("Index/cb-K3", "seq", lambda c: Idx(cb((4, 3, 2))), ValueError, "codebooks"),
    ("Index/cb-K1", "seq", lambda c: Idx(cb((4, 1, 2))), ValueError, "codebooks"),
    ("Index/cb-K512", "seq", lambda c: Idx(cb((2, 512, 2))), ValueError, "codebooks"),
    ("Index/cb-M0", "seq", lambda c: Idx(cb((0, 16, 2))), ValueError, "codebooks"),
    ("Index/cb-dsub0", "seq", lambda c: Idx(cb((4, 16, 0))), ValueError, "codebooks"),
    ("Index/cb-nan", "seq", lambda c: Idx(cb(fill=np.nan)), ValueError, "codebooks"),
    ("Index/cb-inf", "seq", lambda c: Idx(cb(fill=np.inf)), ValueError, "codebooks"),
    ("Index/cb-neginf", "seq", lambda c: Idx(cb(fill=-np.inf)), ValueError, "codebooks"),
    ("Index/cb-f64-overflow", "seq", lambda c: Idx(cb(dtype=np.float64, fill=1e300)), ValueError, "codebooks"),
    ("Index/metric-unknown", "seq", lambda c: Idx(GOOD_CB, metric="cosine"), ValueError, "metric"),
    ("Index/metric-int", "seq", lambda c: Idx(GOOD_CB, metric=2), TypeError, "metric"),  # a type: TypeError
    # --- Index.train ----------------------------------------------------------------------
    ("train/x-int", "seq", lambda c: Idx.train(vecs(64).astype(np.int64), M=2, nbits=2), TypeError, "x"),
    ("train/x-1d", "seq", lambda c: Idx.train(vecs(64)[0], M=2, nbits=2), ValueError, "x"),
    ("train/x-nan", "seq", lambda c: Idx.train(vecs(64, fill=np.nan), M=2, nbits=2), ValueError, "x"),
    ("train/x-empty", "seq", lambda c: Idx.train(vecs(0), M=2, nbits=2), ValueError, "x"),
    ("train/x-too-few", "seq", lambda c: Idx.train(vecs(3), M=2, nbits=2), ValueError, "x"),
    ("train/M-not-divisor", "seq", lambda c: Idx.train(vecs(64), M=3, nbits=2), ValueError, "M"),
    ("train/M-0", "seq", lambda c: Idx.train(vecs(64), M=0, nbits=2), ValueError, "M"),
    ("train/M-float", "seq", lambda c: Idx.train(vecs(64), M=2.0, nbits=2), TypeError, "M"),
    ("train/nbits-9", "seq", lambda c: Idx.train(vecs(64), M=2, nbits=9), ValueError, "nbits"),
    ("train/nbits-0", "seq", lambda c: Idx.train(vecs(64), M=2, nbits=0), ValueError, "nbits"),
    ("train/iters-0", "seq", lambda c: Idx.train(vecs(64), M=2, nbits=2, iters=0), ValueError, "iters"),
    ("train/seed-str", "seq", lambda c: Idx.train(vecs(64), M=2, nbits=2, seed="0"), TypeError, "seed"),
    ("train/metric", "seq", lambda c: Idx.train(vecs(64), M=2, nbits=2, metric="L2"), ValueError, "metric"),
    # --- add ------------------------------------------------------------------------------
    ("add/x-int", "seq", lambda c: c.ix.add(vecs(dtype=np.int64)), TypeError, "x"),
    ("add/x-bool", "seq", lambda c: c.ix.add(vecs() > 0), TypeError, "x"),
    ("add/x-complex", "seq", lambda c: c.ix.add(vecs(dtype=np.complex128)), TypeError, "x"),
    ("add/x-object", "seq", lambda c: c.ix.add(vecs().astype(object)), TypeError, "x"),
    ("add/x-str", "seq", lambda c: c.ix.add("vectors"), TypeError, "x"),
    ("add/x-str-array", "seq", lambda c: c.ix.add(np.full((2, 8), "1.0")), TypeError, "x"),
    ("add/x-None", "seq", lambda c: c.ix.add(None), TypeError, "x"),
    ("add/x-3d", "seq", lambda c: c.ix.add(vecs()[None]), ValueError, "x"),
    ("add/x-0d", "seq", lambda c: c.ix.add(np.float32(1)), ValueError, "x"),
    ("add/x-wrong-dim", "seq", lambda c: c.ix.add(vecs(dim=7)), ValueError, "x"),
    ("add/x-1d-wrong-len", "seq", lambda c: c.ix.add(vecs()[0, :5]), ValueError, "x"),
    ("add/x-zero-cols", "seq", lambda c: c.ix.add(np.zeros((5, 0), F32)), ValueError, "x"),
    ("add/x-zero-1d", "seq", lambda c: c.ix.add(np.zeros((0,), F32)), ValueError, "x"),
    ("add/x-nan", "seq", lambda c: c.ix.add(vecs(fill=np.nan)), ValueError, "x"),
    ("add/x-inf", "seq", lambda c: c.ix.add(vecs(fill=np.inf)), ValueError, "x"),
    ("add/x-neginf", "seq", lambda c: c.ix.add(vecs(fill=-np.inf)), ValueError, "x"),
    ("add/x-f64-overflow", "seq", lambda c: c.ix.add(vecs(dtype=np.float64, fill=1e39)), ValueError, "x"),
    ("add/ids-on-seq-index", "seq", lambda c: c.ix.add(vecs(), ids=np.arange(1000, 1005)), ValueError, "ids"),
    ("add/ids-missing", "explicit", lambda c: c.ix.add(vecs()), ValueError, "ids"),
    ("add/ids-negative", "explicit", lambda c: c.ix.add(vecs(), ids=[1000, 1001, -3, 1002, 1003]), ValueError, "ids"),
    (
        "add/ids-duplicate",
        "explicit",
        lambda c: c.ix.add(vecs(), ids=[1000, 1001, 1000, 1002, 1003]),
        ValueError,
        "ids",
    ),
    ("add/ids-existing", "explicit", lambda c: c.ix.add(vecs(), ids=[1000, 1001, 100, 1002, 1003]), ValueError, "ids"),
    ("add/ids-too-short", "explicit", lambda c: c.ix.add(vecs(), ids=np.arange(1000, 1004)), ValueError, "ids"),
    ("add/ids-too-long", "explicit", lambda c: c.ix.add(vecs(), ids=np.arange(1000, 1006)), ValueError, "ids"),
    ("add/ids-float", "explicit", lambda c: c.ix.add(vecs(), ids=np.arange(1000.0, 1005.0)), TypeError, "ids"),
    ("add/ids-bool", "explicit", lambda c: c.ix.add(vecs(), ids=np.ones(5, bool)), TypeError, "ids"),
    ("add/ids-str", "explicit", lambda c: c.ix.add(vecs(), ids="1000"), TypeError, "ids"),
    ("add/ids-2d", "explicit", lambda c: c.ix.add(vecs(), ids=np.arange(1000, 1005)[:, None]), ValueError, "ids"),
    ("add/ids-int64-max", "explicit", lambda c: c.ix.add(vecs(1), ids=[2**63 - 1]), ValueError, "ids"),
    (
        "add/ids-uint64-huge",
        "explicit",
        lambda c: c.ix.add(vecs(1), ids=np.array([2**64 - 1], np.uint64)),
        ValueError,
        "ids",
    ),
    ("add/read-only", "mmap", lambda c: c.ix.add(vecs()), RuntimeError, "mmap"),
    # --- add_codes ------------------------------------------------------------------------
    ("add_codes/int64", "seq", lambda c: c.ix.add_codes(np.zeros((3, 2), np.int64)), TypeError, "codes"),
    ("add_codes/float", "seq", lambda c: c.ix.add_codes(np.zeros((3, 2), F32)), TypeError, "codes"),
    ("add_codes/int8", "seq", lambda c: c.ix.add_codes(np.zeros((3, 2), np.int8)), TypeError, "codes"),
    ("add_codes/wide", "seq", lambda c: c.ix.add_codes(np.zeros((3, 3), np.uint8)), ValueError, "codes"),
    ("add_codes/1d", "seq", lambda c: c.ix.add_codes(np.zeros(2, np.uint8)), ValueError, "codes"),
    (
        "add_codes/padding-bits",
        "pad",
        lambda c: c.ix.add_codes(np.full((3, 2), 0xFF, np.uint8), ids=[7, 8, 9]),
        ValueError,
        "codes",
    ),
    (
        "add_codes/nbits3-padding",
        "nbits3",
        lambda c: c.ix.add_codes(np.full((2, 2), 0x80, np.uint8)),
        ValueError,
        "codes",
    ),
    (
        "add_codes/ids-mismatch",
        "explicit",
        lambda c: c.ix.add_codes(np.zeros((3, 2), np.uint8), ids=[1000]),
        ValueError,
        "ids",
    ),
    ("add_codes/read-only", "mmap", lambda c: c.ix.add_codes(np.zeros((3, 2), np.uint8)), RuntimeError, "mmap"),
    # --- search ---------------------------------------------------------------------------
    ("search/q-int", "seq", lambda c: c.ix.search(vecs(dtype=np.int32), 3), TypeError, "q"),
    ("search/q-complex", "seq", lambda c: c.ix.search(vecs(dtype=np.complex64), 3), TypeError, "q"),
    ("search/q-object", "seq", lambda c: c.ix.search(vecs().astype(object), 3), TypeError, "q"),
    ("search/q-bytes", "seq", lambda c: c.ix.search(b"\0" * 32, 3), TypeError, "q"),
    ("search/q-3d", "seq", lambda c: c.ix.search(vecs()[None], 3), ValueError, "q"),
    ("search/q-wrong-dim", "seq", lambda c: c.ix.search(vecs(dim=9), 3), ValueError, "q"),
    ("search/q-nan", "seq", lambda c: c.ix.search(vecs(fill=np.nan), 3), ValueError, "q"),
    ("search/q-neginf", "seq", lambda c: c.ix.search(vecs(fill=-np.inf), 3), ValueError, "q"),
    ("search/k-0", "seq", lambda c: c.ix.search(vecs(), 0), ValueError, "k"),
    ("search/k-negative", "seq", lambda c: c.ix.search(vecs(), -5), ValueError, "k"),
    ("search/k-float", "seq", lambda c: c.ix.search(vecs(), 2.5), TypeError, "k"),
    ("search/k-np-float", "seq", lambda c: c.ix.search(vecs(), np.float64(3.0)), TypeError, "k"),
    ("search/k-str", "seq", lambda c: c.ix.search(vecs(), "10"), TypeError, "k"),
    ("search/k-None", "seq", lambda c: c.ix.search(vecs(), None), TypeError, "k"),
    ("search/k-bool", "seq", lambda c: c.ix.search(vecs(), True), TypeError, "k"),
    ("search/k-2^62", "seq", lambda c: c.ix.search(vecs(), 2**62), ValueError, "k"),
    ("search/k-2^100", "seq", lambda c: c.ix.search(vecs(), 2**100), ValueError, "k"),
    ("search/k-unallocatable", "seq", lambda c: c.ix.search(vecs(), 2**56), MemoryError, "k"),
    # --- encode / decode ------------------------------------------------------------------
    ("encode/x-int8", "seq", lambda c: c.ix.encode(vecs(dtype=np.int8)), TypeError, "x"),
    ("encode/x-wrong-dim", "seq", lambda c: c.ix.encode(vecs(dim=16)), ValueError, "x"),
    ("encode/x-inf", "seq", lambda c: c.ix.encode(vecs(fill=np.inf)), ValueError, "x"),
    ("decode/codes-int", "seq", lambda c: c.ix.decode(np.zeros((2, 2), np.int32)), TypeError, "codes"),
    ("decode/codes-wide", "seq", lambda c: c.ix.decode(np.zeros((2, 5), np.uint8)), ValueError, "codes"),
    ("decode/codes-3d", "seq", lambda c: c.ix.decode(np.zeros((1, 2, 2), np.uint8)), ValueError, "codes"),
    ("decode/padding-bits", "pad", lambda c: c.ix.decode(np.full((2, 2), 0xF0, np.uint8)), ValueError, "codes"),
    # --- remove / reconstruct -------------------------------------------------------------
    ("remove/ids-float", "seq", lambda c: c.ix.remove(np.array([1.5])), TypeError, "ids"),
    ("remove/ids-2d", "seq", lambda c: c.ix.remove(np.zeros((2, 2), np.int64)), ValueError, "ids"),
    ("remove/ids-str", "seq", lambda c: c.ix.remove("3"), TypeError, "ids"),
    ("remove/ids-None", "seq", lambda c: c.ix.remove(None), TypeError, "ids"),
    ("remove/ids-uint64-huge", "seq", lambda c: c.ix.remove(np.array([2**64 - 1], np.uint64)), ValueError, "ids"),
    ("remove/read-only", "mmap", lambda c: c.ix.remove([100]), RuntimeError, "mmap"),
    ("reconstruct/unknown", "seq", lambda c: c.ix.reconstruct([3, 1000]), KeyError, "1000"),
    ("reconstruct/negative", "explicit", lambda c: c.ix.reconstruct([-1]), KeyError, "-1"),
    ("reconstruct/ids-float", "seq", lambda c: c.ix.reconstruct([1.0]), TypeError, "ids"),
    ("reconstruct/ids-2d", "seq", lambda c: c.ix.reconstruct(np.zeros((1, 1), np.int64)), ValueError, "ids"),
    # --- save -----------------------------------------------------------------------------
    ("save/directory", "seq", lambda c: c.ix.save(c.tmp), IsADirectoryError, "path"),
    ("save/parent-missing", "seq", lambda c: c.ix.save(c.tmp / "no" / "x.spq"), FileNotFoundError, "x.spq"),
    ("save/parent-is-file", "seq", lambda c: c.ix.save(write(c, "f", b"") + "/x.spq"), NotADirectoryError, "x.spq"),
    ("save/unwritable-dir", "seq", lambda c: c.ix.save(unwritable_dir(c)), PermissionError, "x.spq"),
    ("save/path-int", "seq", lambda c: c.ix.save(3), TypeError, "path"),
    ("save/path-None", "seq", lambda c: c.ix.save(None), TypeError, "path"),
    ("save/path-empty", "seq", lambda c: c.ix.save(""), ValueError, "path"),
    ("save/path-nul", "seq", lambda c: c.ix.save(str(c.tmp / "a\0b")), ValueError, "path"),
    # --- load -----------------------------------------------------------------------------
    ("load/missing", "seq", lambda c: Idx.load(c.tmp / "missing.spq"), FileNotFoundError, "missing.spq"),
    ("load/directory", "seq", lambda c: Idx.load(c.tmp), IsADirectoryError, "path"),
    ("load/not-regular", "seq", lambda c: Idx.load("/dev/null"), OSError, "/dev/null"),
    ("load/empty", "seq", lambda c: Idx.load(write(c, "empty.spq", b"")), ValueError, "empty.spq"),
    ("load/text", "seq", lambda c: Idx.load(write(c, "t.spq", b"hello world\n" * 20)), ValueError, "t.spq"),
    ("load/truncated", "seq", lambda c: Idx.load(truncated(c)), ValueError, "trunc.spq"),
    ("load/bit-flip", "seq", lambda c: Idx.load(flipped(c)), ValueError, "flip.spq"),
    ("load/mmap-truncated", "seq", lambda c: Idx.load(truncated(c), mmap=True), ValueError, "trunc.spq"),
    ("load/mmap-str", "seq", lambda c: Idx.load(truncated(c), mmap="yes"), TypeError, "mmap"),
    ("load/path-list", "seq", lambda c: Idx.load(["a.spq"]), TypeError, "path"),
    # --- the command line (argparse errors: exit status 2, the option named on stderr) -----
    (
        "cli/search-k-0",
        "seq",
        lambda c: cli("search", "--checkpoint", "m.pt", "--index", "i.spq", "-k", "0"),
        SystemExit,
        "-k",
    ),
    (
        "cli/search-k-text",
        "seq",
        lambda c: cli("search", "--checkpoint", "m.pt", "--index", "i.spq", "-k", "ten"),
        SystemExit,
        "-k",
    ),
    ("cli/search-no-index", "seq", lambda c: cli("search", "--checkpoint", "m.pt"), SystemExit, "--index"),
    (
        "cli/search-query-negative",
        "seq",
        lambda c: cli("search", "--checkpoint", "m.pt", "--index", "i.spq", "--query", "-1"),
        SystemExit,
        "--query",
    ),
    ("cli/train-bits-0", "seq", lambda c: cli("train", "--bits", "0"), SystemExit, "--bits"),
    ("cli/train-crop-scale-nan", "seq", lambda c: cli("train", "--crop-scale", "nan"), SystemExit, "--crop-scale"),
    ("cli/train-backbone", "seq", lambda c: cli("train", "--backbone", "vgg"), SystemExit, "--backbone"),
    (
        "cli/index-split",
        "seq",
        lambda c: cli("index", "--checkpoint", "m.pt", "--out", "o.spq", "--split", "val"),
        SystemExit,
        "--split",
    ),
    ("cli/unknown-command", "seq", lambda c: cli("serve"), SystemExit, "serve"),
]


def test_table_is_big_and_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 40
    entry_points = {i.split("/")[0] for i in ids}
    assert entry_points >= {
        "Index",
        "train",
        "add",
        "add_codes",
        "search",
        "encode",
        "decode",
        "remove",
        "reconstruct",
        "save",
        "load",
        "cli",
    }


@pytest.mark.parametrize("case_id,kind,call,exc,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, kind, call, exc, needle, tmp_path, capsys):
    if case_id == "save/unwritable-dir" and os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    if case_id.startswith("cli/"):
        pytest.importorskip("spqindex.cli")
    rng = np.random.default_rng(11)
    if kind == "mmap":
        make_index("explicit", rng).save(tmp_path / "m.spq")
        ix = spqindex.Index.load(tmp_path / "m.spq", mmap=True)
    else:
        ix = make_index(kind, rng)
    ctx = types.SimpleNamespace(ix=ix, tmp=tmp_path)
    before = index_bytes(ix)
    q = np.random.default_rng(1).standard_normal((3, ix.dim)).astype(F32)
    D0, I0 = ix.search(q, 5)

    with pytest.raises(exc) as info:
        call(ctx)

    err = capsys.readouterr().err
    message = str(info.value) + " " + err
    if exc is SystemExit:
        assert info.value.code in (1, 2), info.value.code
    assert needle in message, f"message does not name {needle!r}: {message!r}"
    assert index_bytes(ix) == before, "the index changed"
    D1, I1 = ix.search(q, 5)
    np.testing.assert_array_equal(I0, I1)
    np.testing.assert_array_equal(D0, D1)


def test_empty_batches_are_no_ops(tmp_path):
    """Zero-row batches are valid (not errors) and change nothing."""
    ix = make_index("seq", np.random.default_rng(2))
    before = index_bytes(ix)
    ix.add(np.zeros((0, 8), F32))
    ix.add_codes(np.zeros((0, 2), np.uint8))
    assert ix.remove(np.zeros(0, np.int64)) == 0
    assert ix.remove([10**9, -1]) == 0  # unknown ids are ignored, as documented
    D, I = ix.search(np.zeros((0, 8), F32), 4)
    assert D.shape == I.shape == (0, 4)
    assert ix.encode(np.zeros((0, 8), F32)).shape == (0, 2)
    assert ix.decode(np.zeros((0, 2), np.uint8)).shape == (0, 8)
    assert ix.reconstruct([]).shape == (0, 8)
    assert index_bytes(ix) == before


def test_add_is_all_or_nothing_for_a_late_bad_id():
    """The bad id is the last of a large batch: nothing of the batch may be stored."""
    ix = make_index("explicit", np.random.default_rng(4))
    before = index_bytes(ix)
    ids = np.arange(10_000, 20_000)
    ids[-1] = 100  # already present
    with pytest.raises(ValueError, match="ids"):
        ix.add(np.random.default_rng(0).standard_normal((10_000, 8)).astype(F32), ids=ids)
    assert index_bytes(ix) == before

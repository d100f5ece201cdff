"""spqindex.IdFilter: a filter prepared once, reused across searches, indexes and index changes."""

import threading

import numpy as np
import pytest
import test_simd

import spqindex
from conftest import random_codebooks

level = test_simd.level  # the fixture: every SIMD level this CPU has


def same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("nbits,M", [(4, 6), (8, 3), (3, 5)])
@pytest.mark.parametrize("explicit", [False, True])
def test_filter_object_equals_the_id_array_through_index_changes(rng, level, nbits, M, explicit):
    cb = random_codebooks(rng, M, nbits, 2)
    index = spqindex.Index(cb, metric="l2")
    x = rng.standard_normal((3000, 2 * M)).astype(np.float32)
    ids = rng.permutation(10**6)[:3000] if explicit else None
    index.add(x[:2000], ids=None if ids is None else ids[:2000])
    all_ids = ids if explicit else np.arange(3000)
    allowed = rng.choice(all_ids, 900, replace=False)
    f = spqindex.IdFilter(allowed)
    assert len(f) == 900 and repr(f) == "spqindex.IdFilter(900 ids)"
    np.testing.assert_array_equal(f.ids, allowed)
    q = rng.standard_normal((7, 2 * M)).astype(np.float32)
    for _ in range(2):  # the second search uses the cached masks
        same(index.search(q, 20, filter=f), index.search(q, 20, filter=allowed))
    index.add(x[2000:], ids=None if ids is None else ids[2000:])  # allowed ids among the new rows
    same(index.search(q, 20, filter=f), index.search(q, 20, filter=allowed))
    assert np.isin(index.search(q, 20, filter=f)[1], allowed).all()
    index.remove(allowed[:300])  # rows move: the cached masks must not be used
    D, I = index.search(q, 20, filter=f)
    same((D, I), index.search(q, 20, filter=allowed))
    assert not np.isin(I, allowed[:300]).any() and np.isin(I[I >= 0], allowed).all()


def test_one_filter_serves_several_indexes_and_threads(rng, tmp_path):
    cb = random_codebooks(rng, 4, 4, 2)
    a, b = spqindex.Index(cb), spqindex.Index(cb)
    a.add(rng.standard_normal((5000, 8)).astype(np.float32))
    b.add(rng.standard_normal((800, 8)).astype(np.float32))
    a.save(tmp_path / "a.spq")
    mapped = spqindex.Index.load(tmp_path / "a.spq", mmap=True)
    allowed = rng.choice(5000, 2000, replace=False)
    f = spqindex.IdFilter(allowed)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    want = {id(ix): ix.search(q, 10, filter=allowed) for ix in (a, b, mapped)}
    for ix in (a, b, mapped, b, a, mapped):  # alternating: each index gets its own masks
        same(ix.search(q, 10, filter=f), want[id(ix)])

    errors = []

    def worker(ix):
        try:
            for _ in range(50):
                same(ix.search(q, 10, filter=f), want[id(ix)])
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(ix,)) for ix in (a, b, mapped, a, b, mapped)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_filter_arguments_are_checked(rng):
    with pytest.raises(TypeError, match="ids"):
        spqindex.IdFilter([1.5, 2.0])
    with pytest.raises(ValueError, match="ids"):
        spqindex.IdFilter(np.zeros((2, 2), np.int64))
    index = spqindex.Index(random_codebooks(rng, 2, 4, 2))
    index.add(rng.standard_normal((10, 4)).astype(np.float32))
    empty = spqindex.IdFilter([])
    D, I = index.search(rng.standard_normal((2, 4)).astype(np.float32), 3, filter=empty)
    assert (I == -1).all() and np.isinf(D).all()
    same((D, I), index.search(rng.standard_normal((2, 4)).astype(np.float32), 3, filter=[]))

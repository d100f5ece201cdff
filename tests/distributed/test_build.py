"""build_sharded on a real local Ray instance: Ray Data encodes, one task per shard writes its file;
the result equals one Index built from the same data with the same codebooks."""

import json
import os

import numpy as np
import pytest
import ray_helpers
from ray_helpers import assert_same

import spqindex

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_local():
    yield from ray_helpers.local_ray()


def test_from_npy_file_and_from_a_multi_block_dataset(ray_local, tmp_path, rng):
    from spqindex.distributed import build_sharded

    x = rng.standard_normal((2500, 12)).astype(np.float32)
    trained = spqindex.Index.train(x, M=4, nbits=4, metric="ip")
    index = spqindex.Index(trained.codebooks, metric="ip")
    index.add(x)
    q = rng.standard_normal((30, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with build_sharded(
        str(tmp_path / "x.npy"), tmp_path / "a", codebooks=trained, num_shards=3, batch_size=500, progress=False
    ) as sx:
        assert len(sx) == 2500 and sx.metric == "ip"
        assert_same(sx, index, q, 25)
        sx.add(x[:3])  # ids continue after the build's sequential ids
        index.add(x[:3])
        assert_same(sx, index, q, 25)
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["id_mode"] == "sequential" and m["next_id"] == 2500 and sum(s["count"] for s in m["shards"]) == 2500
    for s in m["shards"]:  # contiguous id ranges
        ids = spqindex.Index.load(tmp_path / "a" / s["file"], mmap=True).ids
        np.testing.assert_array_equal(ids, np.arange(ids[0], ids[0] + len(ids)))

    import ray

    ds = ray.data.from_numpy([x[:700], x[700:1500], x[1500:]])  # three blocks, uneven
    with build_sharded(
        ds, tmp_path / "b", codebooks=trained.codebooks, metric="ip", num_shards=4, progress=False
    ) as sx:
        index = spqindex.Index(trained.codebooks, metric="ip")
        index.add(x)
        assert sx.shard_sizes == [625] * 4
        assert_same(sx, index, q, 40)


def test_from_parquet_with_user_ids(ray_local, tmp_path, rng):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spqindex.distributed import build_sharded

    x = rng.standard_normal((1200, 8)).astype(np.float32)
    ids = rng.choice(10**12, 1200, replace=False)
    cb = rng.standard_normal((4, 16, 2)).astype(np.float32)
    folder = tmp_path / "parquet"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(1200), 3)):
        table = pa.table({"id": pa.array(ids[part]), "vec": pa.array(list(x[part]), type=pa.list_(pa.float32()))})
        pq.write_table(table, folder / f"part{i}.parquet")
    index = spqindex.Index(cb, metric="spq")
    index.add(x, ids=ids)
    q = rng.standard_normal((20, 8)).astype(np.float32)
    with build_sharded(
        str(folder), tmp_path / "s", codebooks=cb, metric="spq", id_column="id", num_shards=3, progress=False
    ) as sx:
        assert_same(sx, index, q, 30)
        with pytest.raises(ValueError, match="pass ids"):
            sx.add(x[:1])
    with pytest.raises(ValueError, match="column"):
        build_sharded(str(folder), tmp_path / "bad", codebooks=cb, num_shards=2, progress=False)
    assert not [p for p in os.listdir(tmp_path / "bad") if p.startswith("shard-")]  # nothing half-written


def test_images_with_a_trained_spq_model(ray_local, tmp_path, rng):
    torch = pytest.importorskip("torch", reason="the image path needs torch (pip install 'spqindex[train]')")
    import ray

    from spqindex.distributed import build_sharded
    from spqindex.train import SPQConfig, SPQModel

    images = rng.integers(0, 256, (600, 28, 28), dtype=np.uint8)
    model = SPQModel(SPQConfig(bits=16), backbone="cnn28")  # seeded initial weights: a fixed embedding
    model.save(tmp_path / "model.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the embedding actors use 2 threads on CPU: the same arithmetic
    try:
        index = model.build_index(images)
    finally:
        torch.set_num_threads(threads)
    queries = model.embed(images[:20])
    ds = ray.data.from_numpy(images)
    with build_sharded(
        ds, tmp_path / "img", model=str(tmp_path / "model.pt"), num_shards=2, batch_size=256, progress=False
    ) as sx:
        assert sx.metric == "spq" and len(sx) == 600
        np.testing.assert_array_equal(sx.codebooks, model.codebooks())
        assert_same(sx, index, queries, 10)

"""``build_sharded``: a sharded index built in parallel from a Ray Dataset.

Pipeline: the codebooks go to the object store once (``ray.put``); ``map_batches`` workers encode
vectors into packed codes (or, with a trained SPQ model, embed images inside an actor class, on a
GPU when Ray has one, then encode); the encoded blocks stay in the object store; one task per shard
gathers its rows and writes its shard file atomically (``Index.save``); the manifest comes last.
Without an id column, rows get sequential ids in dataset order (the order is preserved) and each
shard takes a contiguous range; with one, each row goes to shard ``hash(id) % S`` as in ``add``.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

import spqindex
from .manifest import codebooks_sha256, shard_file, write_manifest
from .routing import balanced_ranges, hash_shard


def _column(batch: dict, column: Optional[str], id_column: Optional[str]) -> np.ndarray:
    if column is None:
        names = [c for c in batch if c != id_column]
        if len(names) != 1:
            raise ValueError(f"column: the dataset has columns {sorted(batch)}; name the vector column")
        column = names[0]
    if column not in batch:
        raise ValueError(f"column: {column!r} is not a column of the dataset (columns: {sorted(batch)})")
    v = batch[column]
    if v.dtype == object:  # variable-length list columns (e.g. Parquet list<float>)
        v = np.stack(list(v))
    return v


def _output(codes: np.ndarray, batch: dict, id_column: Optional[str]) -> dict:
    out = {"codes": codes}
    if id_column is not None:
        if id_column not in batch:
            raise ValueError(f"id_column: {id_column!r} is not a column of the dataset (columns: {sorted(batch)})")
        out["id"] = np.asarray(batch[id_column], dtype=np.int64)
    return out


_ENCODERS = {}  # per worker process: one empty Index per codebooks object


def _encoder(box, metric: str) -> spqindex.Index:
    import ray

    key = (box[0].hex(), metric)
    if key not in _ENCODERS:
        _ENCODERS[key] = spqindex.Index(ray.get(box[0]), metric=metric)
    return _ENCODERS[key]


def _encode_batch(batch: dict, cb_box, metric: str, column, id_column) -> dict:
    """map_batches function: vectors -> packed codes (the codebooks come from the object store)."""
    x = np.asarray(_column(batch, column, id_column), dtype=np.float32)
    return _output(_encoder(cb_box, metric).encode(x.reshape(len(x), -1)), batch, id_column)


class _Embedder:
    """map_batches actor class: images -> SPQ features (the model loaded once per actor, on a GPU
    when the actor has one) -> packed codes."""

    def __init__(self, model_box, cb_box, metric: str, column, id_column, torch_threads: int):
        import ray
        import torch

        from ..train.model import SPQModel

        torch.set_num_threads(torch_threads)
        m = model_box[0]
        model = ray.get(m) if isinstance(m, ray.ObjectRef) else SPQModel.load(m)
        self.model = model.to("cuda" if torch.cuda.is_available() else "cpu")
        self.encoder = _encoder(cb_box, metric)
        self.column, self.id_column = column, id_column

    def __call__(self, batch: dict) -> dict:
        feats = self.model.embed(_column(batch, self.column, self.id_column))
        return _output(self.encoder.encode(feats), batch, self.id_column)


def _block_rows(block: dict) -> int:
    return int(len(block["codes"]))


def _write_shard(
    path: str,
    codebooks: np.ndarray,
    metric: str,
    blocks: list,
    pieces: list,
    id_start: Optional[int],
    shard: int,
    num_shards: int,
) -> int:
    """Gathers a shard's rows from the encoded blocks and writes its file atomically.

    ``pieces``: (block number, first row, end row) ranges in dataset order, with sequential ids
    from ``id_start``; or, for user ids (``id_start`` None), the rows whose id hashes to ``shard``."""
    import ray

    index = spqindex.Index(codebooks, metric=metric)
    for b, lo, hi in pieces:
        block = ray.get(blocks[b])
        if id_start is None:
            rows = np.flatnonzero(hash_shard(block["id"], num_shards) == shard)
            index.add_codes(block["codes"][rows], ids=block["id"][rows])
        else:
            n = index.ntotal
            index.add_codes(block["codes"][lo:hi], ids=np.arange(id_start + n, id_start + n + hi - lo))
    index.save(path)
    return index.ntotal


def _resolve_columns(ds, column: Optional[str], id_column: Optional[str]) -> str:
    """The vector column, checked on the driver against the dataset's schema (before any work)."""
    names = list(ds.schema().names)
    if id_column is not None and id_column not in names:
        raise ValueError(f"id_column: {id_column!r} is not a column of the dataset (columns: {names})")
    if column is None:
        rest = [c for c in names if c != id_column]
        if len(rest) != 1:
            raise ValueError(f"column: the dataset has columns {names}; name the vector column")
        return rest[0]
    if column not in names:
        raise ValueError(f"column: {column!r} is not a column of the dataset (columns: {names})")
    return column


def _as_dataset(data):
    import ray.data

    if isinstance(data, ray.data.Dataset):
        return data
    paths = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else [os.fspath(p) for p in data]
    if not paths:
        raise ValueError("data: no files given")
    if all(p.endswith(".npy") for p in paths):
        return ray.data.read_numpy(paths)
    if all(p.endswith(".parquet") or os.path.isdir(p) for p in paths):
        return ray.data.read_parquet(paths)
    raise ValueError(f"data: expected a ray.data.Dataset, .npy files or Parquet files/folders, got {paths[:3]}")


def build_sharded(
    data,
    directory,
    *,
    codebooks=None,
    metric: Optional[str] = None,
    model=None,
    column: Optional[str] = None,
    id_column: Optional[str] = None,
    num_shards: int = 4,
    batch_size: int = 4096,
    encoders: Optional[int] = None,
    progress: bool = True,
    address: Optional[str] = None,
    **actor_options,
):
    """Builds a sharded index under ``directory`` from ``data`` and opens it (a ``ShardedIndex``).

    ``data``: a ``ray.data.Dataset``, or ``.npy`` / Parquet paths. Vectors: ``codebooks`` (an
    (M, K, dsub) array, or an ``Index`` whose codebooks and metric are used), ``metric`` (default
    "l2"), ``column`` (the vector column; default the only one besides ``id_column``). Images:
    ``model``, a trained ``spqindex.train.SPQModel`` or the path of its ``model.pt``; the metric is
    "spq" and the codebooks are the model's; ``encoders`` embedding actors (default 1), each with a
    GPU when the cluster has one. ``id_column``: user ids (else sequential ids in dataset order).
    ``actor_options`` go to ``ShardedIndex.open``. A progress bar follows the build (``progress``).
    """
    import ray

    from . import cluster
    from .sharded import ShardedIndex, _new_directory

    if model is not None:
        if isinstance(model, (str, os.PathLike)):
            from ..train.model import SPQModel

            path = os.fspath(model)
            if os.path.isdir(path):
                path = os.path.join(path, "model.pt")
            cb = SPQModel.load(path).codebooks()
            model_obj = path
        else:
            if not hasattr(model, "embed") or not hasattr(model, "codebooks"):
                raise TypeError(f"model: expected an SPQModel or the path of its model.pt, got {type(model).__name__}")
            cb, model_obj = model.codebooks(), model
        if metric not in (None, "spq"):
            raise ValueError(f"metric: an SPQ model's codes are searched with 'spq', got {metric!r}")
        metric = "spq"
    elif isinstance(codebooks, spqindex.Index):
        cb, metric = codebooks.codebooks, metric or codebooks.metric
    elif codebooks is None:
        raise ValueError("codebooks: give the codebooks (or an Index), or a trained model for images")
    else:
        cb = spqindex.Index(codebooks).codebooks  # validated (M, K, dsub) float32
    metric = metric or "l2"
    probe = spqindex.Index(cb, metric=metric)  # validates the metric too
    if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
        raise ValueError(f"num_shards: expected a positive int, got {num_shards!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    ShardedIndex._check_options(actor_options)
    directory = _new_directory(directory)
    cluster.connect(address)

    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = True  # sequential ids follow the dataset's order
    ctx.enable_progress_bars = bool(progress)
    written = []
    try:
        ds = _as_dataset(data)
        column = _resolve_columns(ds, column, id_column)
        cb_box = [ray.put(cb)]  # boxed: Ray Data passes the reference, each worker fetches it once
        if model is not None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            model_box = [ray.put(model_obj) if not isinstance(model_obj, str) else model_obj]
            enc = ds.map_batches(
                _Embedder,
                batch_size=batch_size,
                batch_format="numpy",
                concurrency=encoders or 1,
                num_gpus=gpus,
                fn_constructor_kwargs=dict(
                    model_box=model_box,
                    cb_box=cb_box,
                    metric=metric,
                    column=column,
                    id_column=id_column,
                    torch_threads=1 if gpus else 2,
                ),
            )
        else:
            enc = ds.map_batches(
                _encode_batch,
                batch_size=batch_size,
                batch_format="numpy",
                fn_kwargs=dict(cb_box=cb_box, metric=metric, column=column, id_column=id_column),
            )
        blocks = enc.materialize().to_numpy_refs()
        rows = ray.get([ray.remote(_block_rows).options(num_cpus=0.1).remote(b) for b in blocks])
        n = int(sum(rows))
        starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        r = balanced_ranges(n, num_shards)
        writer = ray.remote(_write_shard).options(num_cpus=0.5)
        tasks = {}
        for s in range(num_shards):
            if id_column is None:  # the rows [r[s], r[s+1]) of the concatenated blocks
                pieces = [
                    (b, int(max(r[s], starts[b]) - starts[b]), int(min(r[s + 1], starts[b + 1]) - starts[b]))
                    for b in range(len(blocks))
                    if starts[b] < r[s + 1] and starts[b + 1] > r[s]
                ]
                id_start = int(r[s])
            else:
                pieces, id_start = [(b, 0, rows[b]) for b in range(len(blocks))], None
            path = os.path.join(directory, shard_file(s, 0))
            written.append(path)
            tasks[writer.remote(path, cb_box[0], metric, blocks, pieces, id_start, s, num_shards)] = s
        counts = [0] * num_shards
        bar = _progress(num_shards, progress)
        pending = list(tasks)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            counts[tasks[ready[0]]] = ray.get(ready[0])
            bar.update(1)
        bar.close()
    except BaseException:
        for p in written:
            if os.path.exists(p):
                os.unlink(p)
        raise
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
    mode = None if n == 0 else ("explicit" if id_column is not None else "sequential")
    write_manifest(
        directory,
        {
            "metric": metric,
            "dim": probe.dim,
            "M": probe.M,
            "nbits": probe.nbits,
            "code_size": probe.code_size,
            "codebooks_sha256": codebooks_sha256(cb),
            "id_mode": mode,
            "next_id": n if mode == "sequential" else 0,
            "generation": 0,
            "ntotal": int(sum(counts)),
            "spqindex_version": spqindex.__version__,
            "shards": [{"file": shard_file(s, 0), "count": int(counts[s])} for s in range(num_shards)],
        },
    )
    return ShardedIndex.open(directory, **actor_options)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="writing shards", unit="shard")

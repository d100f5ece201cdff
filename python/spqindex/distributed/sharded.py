"""``ShardedIndex``: one ``Index`` split over S Ray actors, with the single index's results.

Driver state: the manifest of the last save, one actor per shard, and per shard the changes made
since that save (the redo log: packed codes + ids of adds, ids of removes). A shard actor that
restarts loads its saved file and the driver replays its log, so nothing is lost while the driver
lives; ``save()`` makes the changes durable and empties the logs. If the driver process dies, the
changes since the last ``save()`` are lost and ``open`` finds the last saved snapshot.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

import spqindex
from . import cluster
from .errors import ShardUnavailableError
from .manifest import MANIFEST, codebooks_sha256, read_manifest, shard_file, write_manifest
from .merge import merge_topk
from .routing import balanced_ranges, hash_shard

_INLINE_BYTES = 64 * 1024
_SEQ_MSG = "ids: this index assigns ids itself (earlier adds gave none); call add without ids"
_EXPLICIT_MSG = "ids: this index holds user-given ids (earlier adds gave them); pass ids= here too"


def id_mode(index: spqindex.Index) -> Optional[str]:
    """ "sequential" (the index numbers its ids), "explicit" (user-given ids) or None (not decided:
    empty). Probed with zero-row adds, which change nothing; a read-only index cannot be probed
    and counts as sequential when its ids are 0..n-1 in order."""
    empty = np.empty((0, index.code_size), np.uint8)
    if index.read_only:
        ids = index.ids
        if ids.size == 0:
            return None
        return "sequential" if np.array_equal(ids, np.arange(ids.size)) else "explicit"
    try:
        index.add_codes(empty, ids=np.empty(0, np.int64))
    except ValueError:
        return "sequential"
    try:
        index.add_codes(empty)
    except ValueError:
        return "explicit"
    return None


class ShardedIndex:
    """An index sharded over Ray actors; ``search`` equals ``Index.search`` on all the data.

    Build with :meth:`from_index` or ``build_sharded``, reattach with :meth:`open`. Actor options
    (both constructors): ``num_cpus`` per shard actor (default: half the cluster's CPUs shared by
    the shards, at most 1), ``threads`` inside each actor (default: its whole CPUs, at least 1, set
    with ``spqindex.set_num_threads``), ``placement`` ("spread" placement group by default,
    "strict_spread", "pack", or None for no group), ``placement_timeout`` seconds before a
    placement that cannot be satisfied raises TimeoutError, ``max_restarts`` per actor (default 3),
    ``restart_timeout`` seconds to wait for a failed actor to come back before its shard counts as
    missing (default 120), ``start_timeout`` for the actors' first start (default 300).
    """

    def __init__(self, directory, manifest, actors, infos, pg, options):  # use from_index / open
        self._directory = directory
        self._manifest = manifest
        self._actors = actors
        self._tokens = [i["token"] for i in infos]
        self._counts = [int(i["count"]) for i in infos]
        self._logs: List[list] = [[] for _ in actors]
        self._pg = pg
        self._options = options
        self._codebooks = None
        self.retries = 0  # shard calls retried after an actor failure (for tests and monitoring)
        cb_hash = manifest["codebooks_sha256"]
        for s, info in enumerate(infos):
            if info["codebooks_sha256"] != cb_hash or info["metric"] != manifest["metric"]:
                self.close()
                raise ValueError(
                    f"directory: shard file {info['file']} does not match the manifest (codebooks or metric differ)"
                )
            if info["count"] != manifest["shards"][s]["count"]:
                self.close()
                raise ValueError(
                    f"directory: shard file {info['file']} holds {info['count']} vectors, "
                    f"the manifest says {manifest['shards'][s]['count']}"
                )

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_index(
        cls, index: spqindex.Index, directory, num_shards: int = 4, *, address: Optional[str] = None, **actor_options
    ) -> "ShardedIndex":
        """Splits ``index`` into ``num_shards`` shard files under ``directory`` (created; it must not
        hold a sharded index yet), writes the manifest, starts one actor per shard. Sequential ids
        are split into contiguous ranges, user-given ids by hash (see ``routing``)."""
        if not isinstance(index, spqindex.Index):
            raise TypeError(f"index: expected a spqindex.Index, got {type(index).__name__}")
        if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
            raise ValueError(f"num_shards: expected a positive int, got {num_shards!r}")
        directory = _new_directory(directory)
        cls._check_options(actor_options)
        mode = id_mode(index)
        ids, codes = index.ids, index.codes
        codebooks = index.codebooks
        if mode == "explicit":
            where = hash_shard(ids, num_shards)
            parts = [np.flatnonzero(where == s) for s in range(num_shards)]
        else:
            r = balanced_ranges(ids.size, num_shards)
            parts = [np.arange(r[s], r[s + 1]) for s in range(num_shards)]
        entries = []
        for s, rows in enumerate(parts):
            shard = spqindex.Index(codebooks, metric=index.metric)
            shard.add_codes(codes[rows], ids=ids[rows])
            name = shard_file(s, 0)
            shard.save(os.path.join(directory, name))
            entries.append({"file": name, "count": int(rows.size)})
        manifest = {
            "metric": index.metric,
            "dim": index.dim,
            "M": index.M,
            "nbits": index.nbits,
            "code_size": index.code_size,
            "codebooks_sha256": codebooks_sha256(codebooks),
            "id_mode": mode,
            "next_id": index.next_id if mode != "explicit" else 0,
            "generation": 0,
            "ntotal": int(ids.size),
            "shards": entries,
            "spqindex_version": spqindex.__version__,
        }
        write_manifest(directory, manifest)
        return cls._start(directory, manifest, address, actor_options)

    @classmethod
    def open(cls, directory, address: Optional[str] = None, **actor_options) -> "ShardedIndex":
        """Reattaches to a sharded index saved under ``directory``: one new actor per shard file."""
        directory = os.path.abspath(os.fspath(directory))
        cls._check_options(actor_options)
        manifest = read_manifest(directory)
        for s in manifest["shards"]:
            if not os.path.isfile(os.path.join(directory, s["file"])):
                raise FileNotFoundError(
                    2, "directory: shard file named by the manifest is missing", os.path.join(directory, s["file"])
                )
        return cls._start(directory, manifest, address, actor_options)

    _OPTIONS = (
        "num_cpus",
        "threads",
        "placement",
        "placement_timeout",
        "max_restarts",
        "start_timeout",
        "restart_timeout",
    )

    @classmethod
    def _check_options(cls, options: dict) -> None:
        for key in options:
            if key not in cls._OPTIONS:
                raise TypeError(f"unexpected keyword argument {key!r} (actor options: {cls._OPTIONS})")

    @classmethod
    def _start(cls, directory, manifest, address, options) -> "ShardedIndex":
        cluster.connect(address)
        S = len(manifest["shards"])
        num_cpus = options.get("num_cpus")
        num_cpus = cluster.default_num_cpus(S) if num_cpus is None else cluster.check_num_cpus(num_cpus)
        threads = cluster.threads_for(num_cpus, options.get("threads"))
        max_restarts = options.get("max_restarts", 3)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < -1:
            raise ValueError(f"max_restarts: expected an int >= -1 (-1: unlimited), got {max_restarts!r}")
        pg = cluster.make_placement(
            options.get("placement", "spread"), S, num_cpus, float(options.get("placement_timeout", 60.0))
        )
        try:
            actors, infos = cluster.start_actors(
                directory, S, num_cpus, threads, pg, max_restarts, float(options.get("start_timeout", 300.0))
            )
        except BaseException:
            if pg is not None:
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(pg)
            raise
        resolved = dict(options, num_cpus=num_cpus, threads=threads, max_restarts=max_restarts)
        return cls(directory, manifest, actors, infos, pg, resolved)

    # --- properties ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(sum(self._counts))

    @property
    def ntotal(self) -> int:
        return len(self)

    @property
    def num_shards(self) -> int:
        return len(self._actors)

    @property
    def metric(self) -> str:
        return self._manifest["metric"]

    @property
    def dim(self) -> int:
        return int(self._manifest["dim"])

    @property
    def directory(self) -> str:
        return self._directory

    @property
    def shard_sizes(self) -> List[int]:
        return list(self._counts)

    @property
    def codebooks(self) -> np.ndarray:
        return self._encoder().codebooks

    @property
    def options(self) -> Dict:
        """The actor options in use (defaults resolved)."""
        return dict(self._options)

    def __repr__(self) -> str:
        return (
            f"spqindex.distributed.ShardedIndex(ntotal={len(self)}, num_shards={self.num_shards}, "
            f"metric={self.metric!r}, directory={self._directory!r})"
        )

    def _encoder(self) -> spqindex.Index:
        """An empty local index with the shards' codebooks, for encoding and checking inputs."""
        if self._codebooks is None:
            first = os.path.join(self._directory, self._manifest["shards"][0]["file"])
            from .shard import _open_shard

            self._codebooks = spqindex.Index(_open_shard(first).codebooks, metric=self.metric)
        return self._codebooks

    # --- calls with one retry ----------------------------------------------------------------------
    def _recover(self, s: int, timeout: Optional[float] = None) -> None:
        """Brings shard ``s`` back in step after a failure: waits (up to ``restart_timeout`` seconds)
        for Ray to restart its actor, and if it restarted, replays the changes since the last save."""
        import time

        import ray

        deadline = time.monotonic() + float(self._options.get("restart_timeout", 120.0))
        pause = 0.1
        while True:
            try:
                info = ray.get(self._actors[s].hello.remote(), timeout=timeout)
                break
            except ray.exceptions.ActorUnavailableError:  # restarting (e.g. its node is gone)
                if time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 2.0)
        if info["token"] != self._tokens[s]:
            if self._logs[s]:
                _, count = ray.get(self._actors[s].replay.remote(self._logs[s]), timeout=timeout)
            else:
                count = info["count"]
            if count != self._counts[s]:
                raise RuntimeError(f"shard {s}: restarted with {count} vectors, expected {self._counts[s]}")
            self._tokens[s] = info["token"]

    def _call_all(self, shards, method: str, args_for, timeout: Optional[float] = None):
        """Runs ``method`` on the given shards; a shard whose actor failed or restarted is recovered
        and asked once more. Returns ({shard: reply without the token}, {shard: error})."""
        import ray

        def submit(s):  # the actor acts only if it still has the token we know (see shard.py)
            return getattr(self._actors[s], method).remote(self._tokens[s], *args_for(s))

        pending = {s: submit(s) for s in shards}
        done, failed = {}, {}
        try:  # the common case in one call: every shard answers, none restarted
            replies = ray.get(list(pending.values()), timeout=timeout)
            if all(r[0] == self._tokens[s] for s, r in zip(pending, replies)):
                return {s: list(r[1:]) for s, r in zip(pending, replies)}, {}
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            pass  # sorted out shard by shard below
        for attempt in (0, 1):
            retry = []
            for s, ref in pending.items():
                try:
                    token, *reply = ray.get(ref, timeout=timeout)
                except ray.exceptions.RayTaskError as e:  # the shard's Index refused: not retried
                    failed[s] = e
                    continue
                except (
                    ray.exceptions.RayActorError,
                    ray.exceptions.GetTimeoutError,
                    ray.exceptions.ObjectLostError,
                ) as e:
                    failed[s] = e
                    retry.append(s)
                    continue
                if token != self._tokens[s]:  # restarted since our last call: it did nothing
                    failed[s] = RuntimeError(f"shard {s} restarted")
                    retry.append(s)
                    continue
                done[s] = reply
                failed.pop(s, None)
            if not retry or attempt == 1:
                break
            pending = {}
            for s in retry:
                self.retries += 1
                try:
                    self._recover(s, timeout)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, RuntimeError) as e:
                    failed[s] = e
                    continue
                pending[s] = submit(s)
        return done, failed

    # --- queries ---------------------------------------------------------------------------------
    def search(self, q, k: int = 10, allow_partial: bool = False, timeout: Optional[float] = None):
        """Exact top-k over all shards: ``(D, I)`` equal to ``Index.search`` on all the data (ids,
        distances, ties by smaller id, padding id -1 with +inf, or -inf for "ip"). A batch of queries
        goes to the object store once (a batch under 64 KiB travels inline). A shard that fails is retried once (after Ray restarts it); if some
        still do not answer, ShardUnavailableError, or with ``allow_partial=True`` ``(D, I, missing)``
        from the others, ``missing`` naming the shards left out (empty when all answered).
        ``timeout``: seconds to wait for each shard call (None: no limit)."""
        import ray

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        k = int(k)
        qa = _query_matrix(q, self.dim)
        # A large batch goes to the object store once and every shard reads it there; a small one
        # travels inline with each call (cheaper than a put for a single query).
        qref = ray.put(qa) if qa.nbytes > _INLINE_BYTES else qa
        done, failed = self._call_all(range(self.num_shards), "search", lambda s: (qref, k), timeout)
        _raise_refusal(failed)
        missing = sorted(failed)
        if missing and not allow_partial:
            raise ShardUnavailableError(
                missing, "; ".join(f"shard {s}: {type(e).__name__}: {e}" for s, e in sorted(failed.items()))
            )
        order = sorted(done)
        D, I = (
            merge_topk([done[s][0] for s in order], [done[s][1] for s in order], k, self.metric)
            if order
            else merge_topk(
                [np.empty((qa.shape[0], 0), np.float32)], [np.empty((qa.shape[0], 0), np.int64)], k, self.metric
            )
        )
        return (D, I, missing) if allow_partial else (D, I)

    # --- changes ---------------------------------------------------------------------------------
    def add(self, x, ids=None) -> None:
        """Encodes ``x`` (n, dim) on the driver and stores the codes. Without ``ids`` the vectors get
        the next sequential ids (as ``Index.add``) and go to the smallest shard; with ``ids`` each
        goes to shard ``hash(id) % S``. All-or-nothing. Durable after the next ``save()``."""
        self._add_codes(self._encoder().encode(x), ids)

    def add_codes(self, codes, ids=None) -> None:
        """Stores already packed codes (n, code_size) uint8, as ``add``."""
        ca = np.asarray(codes)
        size = int(self._manifest["code_size"])
        if ca.dtype != np.uint8:
            raise TypeError(f"codes: expected packed codes of dtype uint8, got {ca.dtype}")
        if ca.ndim != 2 or ca.shape[1] != size:
            raise ValueError(f"codes: expected shape (n, {size}) (code_size bytes per row), got {ca.shape}")
        self._add_codes(np.ascontiguousarray(ca), ids)

    def _add_codes(self, codes: np.ndarray, ids) -> None:
        n = codes.shape[0]
        mode = self._manifest["id_mode"]
        if ids is None:
            if mode == "explicit":
                raise ValueError(_EXPLICIT_MSG)
            start = int(self._manifest["next_id"])
            ia = np.arange(start, start + n, dtype=np.int64)
            target = int(np.argmin(self._counts))
            parts = {target: np.arange(n)} if n else {}
        else:
            if mode == "sequential":
                raise ValueError(_SEQ_MSG)
            ia = _id_vector(ids, "ids", n)
            where = hash_shard(ia, self.num_shards)
            parts = {s: np.flatnonzero(where == s) for s in np.unique(where).tolist()}
        args = {s: (codes[rows], ia[rows]) for s, rows in parts.items()}
        done, failed = self._call_all(list(args), "add_codes", lambda s: args[s])
        if failed:  # all-or-nothing: take back what the other shards stored
            undo, _ = self._call_all(list(done), "remove", lambda s: (args[s][1],))
            for s in undo:
                self._counts[s] = undo[s][1]
            _raise_refusal(failed)
            raise ShardUnavailableError(sorted(failed), "add was taken back on the other shards")
        for s, (count,) in done.items():
            self._counts[s] = count
            self._logs[s].append(("add",) + args[s])
        if n:
            self._manifest["id_mode"] = "sequential" if ids is None else "explicit"
            if ids is None:
                self._manifest["next_id"] = int(ia[-1]) + 1

    def remove(self, ids) -> int:
        """Removes the given ids from every shard; unknown ids are ignored. Returns how many were
        removed. Durable after the next ``save()``."""
        ia = _id_vector(ids, "ids")
        done, failed = self._call_all(range(self.num_shards), "remove", lambda s: (ia,))
        for s, (n, count) in done.items():
            self._counts[s] = count
            if n:
                self._logs[s].append(("remove", ia))
        _raise_refusal(failed)
        if failed:
            raise ShardUnavailableError(
                sorted(failed), "remove reached only the other shards; their removals stand, call remove again"
            )
        return int(sum(n for n, _ in done.values()))

    def save(self) -> None:
        """Snapshots the shards changed since the last save to new files (each atomic), then
        replaces the manifest atomically, then deletes the files it no longer names. Unchanged
        shards are not rewritten."""
        m = self._manifest
        dirty = [s for s in range(self.num_shards) if self._logs[s]]
        if (
            not dirty
            and os.path.isfile(os.path.join(self._directory, MANIFEST))
            and read_manifest(self._directory)["generation"] == m["generation"]
        ):
            return
        gen = int(m["generation"]) + 1
        names = {s: shard_file(s, gen) for s in dirty}
        done, failed = self._call_all(dirty, "save", lambda s: (os.path.join(self._directory, names[s]),))
        if failed:
            for s in dirty:
                _unlink(os.path.join(self._directory, names[s]))
            _raise_refusal(failed)
            raise ShardUnavailableError(sorted(failed), "save failed; the previous snapshot stands")
        old = [m["shards"][s]["file"] for s in dirty]
        shards = [dict(e) for e in m["shards"]]
        for s in dirty:
            shards[s] = {"file": names[s], "count": int(done[s][0])}
        new = dict(m, generation=gen, shards=shards, ntotal=int(sum(e["count"] for e in shards)))
        write_manifest(self._directory, new)
        self._manifest = new
        for s in dirty:
            self._logs[s] = []
        for name in old:
            _unlink(os.path.join(self._directory, name))

    def flush(self) -> None:
        """Same as ``save()`` (incremental: only changed shards are written)."""
        self.save()

    def unsaved_changes(self) -> int:
        """How many add/remove calls per shard are held only in memory (lost if the driver dies)."""
        return int(sum(len(log) for log in self._logs))

    # --- lifetime --------------------------------------------------------------------------------
    def shard_info(self) -> List[dict]:
        """Per shard: actor token, count, pid, node id, threads, file (one call per actor)."""
        import ray

        return ray.get([a.hello.remote() for a in self._actors])

    def actor(self, s: int):
        """The Ray actor handle of shard ``s``."""
        return self._actors[s]

    def close(self) -> None:
        """Stops the actors and removes the placement group; unsaved changes are dropped."""
        import ray

        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already gone
                pass
        self._actors = []
        if self._pg is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self._pg)
            except Exception:
                pass
            self._pg = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _new_directory(directory) -> str:
    if isinstance(directory, (bytes, bytearray)):
        directory = os.fsdecode(directory)
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory: expected a str or os.PathLike, got {type(directory).__name__}")
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(os.path.join(directory, MANIFEST)):
        raise FileExistsError(17, "directory: already holds a sharded index", directory)
    return directory


def _query_matrix(q, dim: int) -> np.ndarray:
    if hasattr(q, "detach"):  # torch tensors
        q = q.detach().cpu().numpy()
    a = np.asarray(q)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"q: expected a float array, got {a.dtype}")
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"q: expected shape (n, {dim}), got {np.shape(q)}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError("q: contains NaN or Inf")
    return a


def _id_vector(ids, name: str, n: Optional[int] = None) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        if a.size == 0:
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name}: expected an integer array, got {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name}: length {a.shape[0]} does not match the {n} vectors given")
    if a.size and (a.min() < 0 or (a.dtype.kind == "u" and a.max() > np.iinfo(np.int64).max)):
        raise ValueError(f"{name}: ids must be non-negative int64 values")
    a = a.astype(np.int64)
    if n is not None and np.unique(a).size != a.size:
        raise ValueError(f"{name}: contains duplicates")
    return a


def _raise_refusal(failed: dict) -> None:
    """Re-raises the first error a shard's ``Index`` raised (e.g. a duplicate id) as its own type."""
    import ray

    for s in sorted(failed):
        e = failed[s]
        if isinstance(e, ray.exceptions.RayTaskError):
            cause = e.cause if isinstance(e.cause, Exception) else e.as_instanceof_cause()
            raise cause from None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""Ray plumbing: joining a cluster, the shards' CPU share and threads, their placement group."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

PLACEMENTS = ("spread", "strict_spread", "pack", None)


def connect(address: Optional[str] = None) -> None:
    """Uses the Ray instance already started in this process, else joins ``address`` ("auto", or
    "host:port"), else the cluster named by $RAY_ADDRESS (e.g. inside a Ray job), else starts a
    local one."""
    import os

    import ray

    if ray.is_initialized():
        return
    if address is None and not os.environ.get("RAY_ADDRESS"):
        address = "local"
    ray.init(address=address)


def default_num_cpus(num_shards: int) -> float:
    """Half the cluster's CPUs shared by the shards, at most 1 each (so 4 shards fit on 2 CPUs and
    half the CPUs stay free for other Ray work, e.g. ``build_sharded``'s encoders)."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    share = min(1.0, total / (2 * num_shards))
    return max(0.01, math.floor(share * 100) / 100)


def threads_for(num_cpus: float, threads: Optional[int]) -> int:
    """Threads inside a shard actor: ``threads`` if given, else its whole CPUs (at least 1)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads: expected a positive int, got {threads!r}")
        return threads
    return max(1, int(num_cpus))


def check_num_cpus(num_cpus) -> float:
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not 0 < num_cpus < math.inf:
        raise ValueError(f"num_cpus: expected a positive number, got {num_cpus!r}")
    return float(num_cpus)


def make_placement(placement: Optional[str], num_shards: int, num_cpus: float, timeout: float):
    """A placement group of one ``{"CPU": num_cpus}`` bundle per shard, or None. Raises
    TimeoutError (after removing it) when it cannot be placed within ``timeout`` seconds."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    if placement not in PLACEMENTS:
        raise ValueError(f"placement: expected one of {PLACEMENTS}, got {placement!r}")
    if placement is None:
        return None
    pg = placement_group([{"CPU": num_cpus}] * num_shards, strategy=placement.upper())
    try:
        ray.get(pg.ready(), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(pg)
        raise TimeoutError(
            f"placement: {num_shards} bundles of {{'CPU': {num_cpus}}} with strategy {placement.upper()} "
            f"could not be placed within {timeout} s (cluster resources: {ray.cluster_resources()}, "
            f"available: {ray.available_resources()}); lower num_cpus, or use placement=None"
        ) from None
    return pg


def start_actors(
    directory: str, num_shards: int, num_cpus: float, threads: int, pg, max_restarts: int, timeout: float
) -> Tuple[List, List[dict]]:
    """One ``ShardServer`` actor per shard; waits for each to have loaded its file."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from .shard import ShardServer

    cls = ray.remote(ShardServer)
    actors = []
    for i in range(num_shards):
        strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i) if pg is not None else "SPREAD"
        actors.append(
            cls.options(
                num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=0, scheduling_strategy=strategy
            ).remote(directory, i, threads)
        )
    try:
        infos = ray.get([a.hello.remote() for a in actors], timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        for a in actors:
            ray.kill(a, no_restart=True)
        raise TimeoutError(
            f"shard actors did not start within {timeout} s (available resources: {ray.available_resources()})"
        ) from None
    except BaseException:
        for a in actors:
            ray.kill(a, no_restart=True)
        raise
    return actors, infos

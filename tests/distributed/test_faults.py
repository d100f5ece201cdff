"""Faults on a real two-node Ray cluster on this machine (loopback): a head node and a worker node,
each started with ``ray start --block`` in its own process group and stopped at the end by that
group's id. A shard actor is killed in the middle of a search, then the whole worker node is
killed; searches must still equal one Index, unsaved adds must survive (the driver replays them),
and the manifest and files must stay consistent.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from ray_helpers import require_ray, worker_env

import spqindex

pytestmark = pytest.mark.ray


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM, grace: float = 10.0) -> None:
    """Stops a node: its ``ray start --block`` process group (the group id is that process's id)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def _alive_nodes(ray) -> int:
    return sum(1 for n in ray.nodes() if n["Alive"])


def _wait(cond, what: str, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.5)


def _is_dead(ray, actor) -> bool:
    try:
        ray.get(actor.hello.remote(), timeout=10)
    except ray.exceptions.ActorDiedError:
        return True
    except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
        pass
    return False


@pytest.fixture(scope="module")
def two_nodes():
    ray = require_ray()
    worker_env()
    if ray.is_initialized():
        ray.shutdown()
    env = dict(os.environ, RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--block", "--disable-usage-stats"]
    procs = {}
    try:
        procs["head"] = subprocess.Popen(
            [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false"] + common,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def gcs_up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        _wait(gcs_up, "the head node's GCS")
        procs["worker"] = subprocess.Popen(
            [ray_bin, "start", f"--address={address}"] + common,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ray.init(address=address, log_to_driver=False)
        _wait(lambda: _alive_nodes(ray) == 2, "the worker node to join")
        yield {"ray": ray, "procs": procs, "address": address}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for p in procs.values():
            _stop(p)
        marker = "/tmp/ray/ray_current_cluster"  # Ray's pointer to the newest cluster: ours, now gone
        if os.path.isfile(marker) and open(marker).read().strip().endswith(f":{port}"):
            os.unlink(marker)


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _check_files(directory, sx, index):
    m = json.loads(open(os.path.join(directory, "manifest.json")).read())
    assert m["ntotal"] == len(index) == len(sx)
    names = sorted(p for p in os.listdir(directory) if p.startswith("shard-"))
    assert names == sorted(s["file"] for s in m["shards"])
    ids = []
    for s in m["shards"]:
        shard = spqindex.Index.load(os.path.join(directory, s["file"]), mmap=True)
        assert len(shard) == s["count"]
        ids.append(shard.ids)
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.sort(index.ids))


def test_kill_a_shard_actor_mid_query_then_lose_the_worker_node(two_nodes, tmp_path, rng):
    from spqindex.distributed import ShardedIndex

    ray = two_nodes["ray"]
    cb = rng.standard_normal((16, 256, 2)).astype(np.float32)  # 8-bit codes: a slow enough scan
    index = spqindex.Index(cb, metric="l2")
    index.add(rng.standard_normal((40000, 32)).astype(np.float32))
    q = rng.standard_normal((20000, 32)).astype(np.float32)  # ~2 s of scanning per shard
    sx = ShardedIndex.from_index(index, tmp_path, num_shards=4, num_cpus=0.2, max_restarts=5)
    try:
        infos = sx.shard_info()
        head = ray.get_runtime_context().get_node_id()
        assert len({i["node"] for i in infos}) == 2  # the SPREAD placement used both nodes

        # Unsaved adds on every shard, then kill shard 0's actor while it scans.
        x = rng.standard_normal((40, 32)).astype(np.float32)
        for part in np.array_split(x, 4):
            sx.add(part)
            index.add(part)
        assert len(sx) == len(index)
        expected = index.search(q, 10)
        victim = infos[0]
        result = {}
        t = threading.Thread(target=lambda: result.update(out=sx.search(q, 10)))
        ticks = _cpu_ticks(victim["pid"])
        t.start()
        _wait(lambda: _cpu_ticks(victim["pid"]) > ticks + 5, "shard 0 to start scanning", 60)
        os.kill(victim["pid"], signal.SIGKILL)
        t.join(300)
        assert not t.is_alive()
        D, I = result["out"]
        np.testing.assert_array_equal(I, expected[1])
        np.testing.assert_array_equal(D, expected[0])
        assert sx.retries >= 1
        after = sx.shard_info()
        assert after[0]["pid"] != victim["pid"] and after[0]["token"] != victim["token"]
        assert [i["count"] for i in after] == sx.shard_sizes  # the restarted shard got its adds back

        # Lose the worker node (its raylet and every process of that node, SIGKILL).
        on_worker = [s for s, i in enumerate(after) if i["node"] != head]
        assert on_worker
        more = rng.standard_normal((8, 32)).astype(np.float32)
        sx.add(more)
        index.add(more)
        expected = index.search(q[:500], 10)
        _stop(two_nodes["procs"]["worker"], signal.SIGKILL, grace=1)
        _wait(lambda: _alive_nodes(ray) == 1, "the worker node to be marked dead")
        D, I = sx.search(q[:500], 10)
        np.testing.assert_array_equal(I, expected[1])
        np.testing.assert_array_equal(D, expected[0])
        moved = sx.shard_info()
        assert all(i["node"] == head for i in moved)
        assert all(moved[s]["token"] != after[s]["token"] for s in on_worker)

        # Everything survives a save and a reopen; files and manifest agree with the Index.
        sx.save()
        _check_files(tmp_path, sx, index)
    finally:
        sx.close()
    with ShardedIndex.open(tmp_path, num_cpus=0.2) as sx:
        D, I = sx.search(q[:200], 10)
        D0, I0 = index.search(q[:200], 10)
        np.testing.assert_array_equal(I, I0)
        np.testing.assert_array_equal(D, D0)


def test_a_shard_that_stays_dead_is_never_silently_left_out(two_nodes, tmp_path, rng):
    from spqindex.distributed import ShardedIndex, ShardUnavailableError

    ray = two_nodes["ray"]
    cb = rng.standard_normal((4, 16, 2)).astype(np.float32)
    index = spqindex.Index(cb, metric="ip")
    index.add(rng.standard_normal((2000, 8)).astype(np.float32))
    q = rng.standard_normal((20, 8)).astype(np.float32)
    with ShardedIndex.from_index(index, tmp_path, num_shards=3, num_cpus=0.1, max_restarts=0, placement=None) as sx:
        dead = sx.shard_info()[1]
        ray.kill(sx.actor(1), no_restart=True)
        # ray.kill is asynchronous: a search sent right after it can still be served by the actor.
        _wait(lambda: _is_dead(ray, sx.actor(1)), "the killed actor to be dead", 60)
        with pytest.raises(ShardUnavailableError) as e:
            sx.search(q, 10)
        assert e.value.missing == [1]
        D, I, missing = sx.search(q, 10, allow_partial=True)
        assert missing == [1]
        rest = spqindex.Index(cb, metric="ip")  # what the two live shards hold
        for name in sorted(os.listdir(tmp_path)):
            if name.startswith("shard-") and name != dead["file"]:
                part = spqindex.Index.load(tmp_path / name, mmap=True)
                rest.add_codes(part.codes, ids=part.ids)
        D0, I0 = rest.search(q, 10)
        np.testing.assert_array_equal(I, I0)
        np.testing.assert_array_equal(D, D0)
        # Saved data was not touched: the dead shard's file is intact.
        assert len(spqindex.Index.load(tmp_path / dead["file"], mmap=True)) == dead["count"]

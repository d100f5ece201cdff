"""Helpers of the Ray tests: whether ray must be present, the environment Ray's workers need, and
``local_ray`` (a real local Ray instance with 2 CPUs) that the test modules' ``ray_local`` fixtures
yield from, and ``assert_same`` (a sharded search equals the Index's). No conftest.py here: it would shadow tests/conftest.py's helpers (both import as
``conftest``)."""

import os

import numpy as np
import pytest

import spqindex


def require_ray():
    """ray, or a skip with the reason; under CI (which installs the [ray] extra) a missing ray fails."""
    if os.environ.get("CI"):
        import ray

        return ray
    return pytest.importorskip("ray", reason="ray not installed (pip install 'spqindex[ray]')")


def worker_env() -> None:
    """Ray's workers must import the same spqindex as this process: its folder goes on PYTHONPATH."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(spqindex.__file__)))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + parts)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Throw-away loopback clusters: no token to hand around. Ray reads this once per process, so
    # every Ray test (local instance and two-node cluster alike) runs with the same setting.
    os.environ["RAY_AUTH_MODE"] = "disabled"


worker_env()  # before anything in this process starts Ray


def local_ray():
    """Generator for a module-scoped fixture: starts a local Ray instance, stops it afterwards."""
    ray = require_ray()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def assert_same(sx, index, q, k):
    """The sharded search equals one Index's: ids, distances (bit for bit) and dtypes."""
    D, I = sx.search(q, k)
    D0, I0 = index.search(q, k)
    np.testing.assert_array_equal(I, I0)
    np.testing.assert_array_equal(D, D0)
    assert D.dtype == np.float32 and I.dtype == np.int64

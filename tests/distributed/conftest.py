"""Ray fixtures: a real local Ray instance (2 CPUs) for the API tests.

Ray's workers must import the same spqindex as this process, so its folder goes on PYTHONPATH
before Ray starts. Without ray installed the Ray tests skip, except under CI, where they must run.
"""
import os

import pytest

import spqindex


def require_ray():
    if os.environ.get("CI"):
        import ray  # CI installs the [ray] extra: a missing ray is a failure there
        return ray
    return pytest.importorskip("ray", reason="ray not installed (pip install 'spqindex[ray]')")


def worker_env() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(spqindex.__file__)))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + parts)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def ray_local():
    ray = require_ray()
    worker_env()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()

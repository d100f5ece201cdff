"""Ray fixtures: a real local Ray instance (2 CPUs) for the API tests. Without ray installed the
Ray tests skip, except under CI, where they must run."""
import pytest
from ray_helpers import require_ray, worker_env

worker_env()  # before anything in this process starts Ray


@pytest.fixture(scope="module")
def ray_local():
    ray = require_ray()
    worker_env()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()

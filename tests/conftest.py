import numpy as np
import pytest

import spqindex


def random_codebooks(rng, M, nbits, dsub, scale=1.0):
    return (rng.standard_normal((M, 1 << nbits, dsub)) * scale).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def small_index(rng):
    cb = random_codebooks(rng, 4, 4, 3)
    index = spqindex.Index(cb, metric="l2")
    x = rng.standard_normal((100, 12)).astype(np.float32)
    index.add(x)
    return index, x

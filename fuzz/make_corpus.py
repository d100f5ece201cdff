"""Writes the small seed corpus of fuzz_load.py (a few valid files, prefixed with the two mode
bytes the target reads). Rerun after a file-format change: python fuzz/make_corpus.py"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "robustness"))
from robust_helpers import index_bytes, make_index  # noqa: E402


def main():
    out = os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    seeds = {
        "explicit": make_index("explicit", rng, 12),
        "pad": make_index("pad", rng, 5),
        "nbits3": make_index("nbits3", rng, 4),
        "empty": make_index("seq", rng, 0),
        "grouped8": make_index("grouped8", rng, 3),
    }
    for name, index in seeds.items():
        data = index_bytes(index)
        for mode in (0, 1):  # 0: bytes as they are, 1: checksum recomputed by the target
            with open(os.path.join(out, f"{name}-{mode}.bin"), "wb") as f:
                f.write(bytes([mode, mode]) + data)


if __name__ == "__main__":
    main()

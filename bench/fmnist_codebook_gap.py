"""Where a trained SPQ model loses retrieval quality on Fashion-MNIST: features vs codebooks.

    python bench/fmnist_codebook_gap.py runs/fmnist-v2/spq16/model.pt

Scores mAP@1000 of 2,000 test queries (seeded sample) against the 60k train images by exact cosine on the
model's features, through its own codebooks (metrics "spq", "l2", "ip"), and through k-means PQ codebooks
(``Index.train``, same M and K) fitted to the same features, raw and L2-normalised; prints codeword usage.
"""

import sys

import numpy as np
import torch

import spqindex
from spqindex import datasets
from spqindex.metrics import map_at_n
from spqindex.pq import unpack_codes
from spqindex.train import SPQModel


def main(path: str) -> None:
    torch.set_num_threads(1)
    model = SPQModel.load(path)
    xd, yd = datasets.fashion_mnist("train")
    xq, yq = datasets.fashion_mnist("test")
    rows = np.random.default_rng(0).choice(len(xq), 2000, replace=False)
    xq, yq = xq[rows], yq[rows]
    fd, fq = model.embed(xd), model.embed(xq)
    M, K = model.cfg.M, model.cfg.K

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    def score(ids):
        return round(map_at_n(ids, yq, yd, 1000), 4)

    sims = torch.from_numpy(unit(fq) @ unit(fd).T)
    print("exact cosine on features:", score(torch.topk(sims, 1000, dim=1).indices.numpy()))
    for metric in ("spq", "l2", "ip"):
        index = spqindex.Index(model.codebooks(), metric=metric)
        index.add(fd)
        print(f"model codebooks, metric {metric}:", score(index.search(fq, 1000)[1]))
    for name, a, b in (("raw", fd, fq), ("L2-normalised", unit(fd), unit(fq))):
        index = spqindex.Index.train(a, M=M, nbits=model.cfg.nbits, metric="l2", seed=0)
        index.add(a)
        print(f"k-means PQ codebooks on {name} features, metric l2:", score(index.search(b, 1000)[1]))
    codes = model.build_index(xd).codes
    assign = unpack_codes(codes, M, model.cfg.nbits)  # (n, M) codeword indices
    for m in range(M):
        p = np.bincount(assign[:, m], minlength=K) / len(assign)
        print(
            f"m={m}: {np.count_nonzero(p)} of {K} codewords used, entropy {-(p[p > 0] * np.log2(p[p > 0])).sum():.2f} bits"
        )
    print("distinct codes:", len(np.unique(codes, axis=0)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])

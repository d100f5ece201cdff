"""Mined positives on Fashion-MNIST's held-out split: train SPQ where view B may come from a "partner" image.

    python bench/fmnist_partners.py --scheme consensus --k 50 --spaces ours,eff,pix --epochs 4 --step 2 \\
        --init models/fmnist-spq32.pt --out runs/partners/cons50

Groups (``spqindex.train.partners``): ``consensus`` intersects spherical k-means clusterings (--k clusters each)
of the chosen feature spaces: ``ours`` (the model's own features, re-clustered after every epoch), ``eff`` (frozen
ImageNet EfficientNet-Lite0 at --eff-size px, PCA 128) and ``pix`` (raw pixels, PCA 64); ``concat`` clusters their
concatenation once per epoch. Diagnostics that read the labels (never a method): ``oracle`` groups by class
(``--noise`` of the partners from a uniformly wrong class), ``oracle-consensus`` by class inside the consensus
group. Each evaluation row (held-out mAP@1000, as bench/fmnist_heldout.py) also gets the partners' pair purity,
measured with the labels. ``--init`` fine-tunes a trained model (a fresh cosine schedule from --lr).
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from spqindex.train import SPQConfig, SPQModel
from spqindex.train.partners import GroupPartners, ListPartners, consensus_groups, spherical_kmeans
from fmnist_heldout import fit_heldout, heldout_row, heldout_split  # bench/ is on sys.path when run as a script


def pca(x: np.ndarray, d: int) -> np.ndarray:
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x[::5], full_matrices=False)
    return (x @ vt[:d].T).astype(np.float32)


def efficientnet_features(images: np.ndarray, size: int, cache: str) -> np.ndarray:
    """Pooled 1280-d features of frozen ImageNet EfficientNet-Lite0 on the images resized to ``size`` px (cached)."""
    if cache and os.path.exists(cache):
        return np.load(cache)
    from spqindex.train.backbones import EfficientNetLite0

    net = EfficientNetLite0(1).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 256):
            b = torch.from_numpy(images[i : i + 256]).float().div(255).unsqueeze(1)
            out.append(net.pooled(F.interpolate(b, size=size, mode="bilinear", align_corners=False)).numpy())
    feats = np.concatenate(out)
    if cache:
        np.save(cache, feats)
    return feats


def knn(x: np.ndarray, k: int, cache: str = "") -> np.ndarray:
    """(n, k) ids of each row's k nearest other rows by cosine (cached in ``cache`` when given)."""
    if cache and os.path.exists(cache) and np.load(cache, mmap_mode="r").shape[1] >= k:
        return np.load(cache)[:, :k]
    unit = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), dim=1)
    out = []
    for i in range(0, len(unit), 2000):
        sim = unit[i : i + 2000] @ unit.T
        sim[torch.arange(len(sim)), torch.arange(i, i + len(sim))] = -2.0  # not itself
        out.append(sim.topk(k, dim=1).indices.numpy().astype(np.int32))
    ids = np.concatenate(out)
    if cache:
        np.save(cache, ids)
    return ids


def _pair_keys(near: np.ndarray) -> np.ndarray:
    """(n, k) neighbour lists as sorted-comparable keys i * n + j."""
    n = len(near)
    return np.arange(n).repeat(near.shape[1]).astype(np.int64) * n + near.reshape(-1)


def cross_space_candidates(near_a: np.ndarray, near_b: np.ndarray, within=None, exclude=None):
    """CSR candidate lists: j is a candidate of i when it is among i's nearest in both fixed spaces (``near_a``,
    ``near_b``: same kind by two other views), and, when given, among i's nearest in the model's own space
    (``within``) but not among its very nearest there (``exclude``)."""
    n = len(near_a)
    keys = _pair_keys(near_a)
    keep = np.isin(keys, _pair_keys(near_b))
    if within is not None:
        keep &= np.isin(keys, _pair_keys(within))
    if exclude is not None:
        keep &= ~np.isin(keys, _pair_keys(exclude))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys[keep] // n, minlength=n))])
    return indptr, near_a.reshape(-1)[keep]


def pair_purity(groups: np.ndarray, labels: np.ndarray) -> tuple:
    """(chance that another member of an image's group shares its class, mean group size an image sees)."""
    table = np.zeros((groups.max() + 1, labels.max() + 1))
    np.add.at(table, (groups, labels), 1)
    size = table.sum(1)[groups]
    same = (table[groups, labels] - 1) / np.maximum(size - 1, 1)
    return float(same[size > 1].mean()), float(size.mean())


class Mining:
    """Recomputes the partner groups from the fixed spaces and (when used) the model's own features."""

    def __init__(self, args, xd, yd):
        self.args, self.xd, self.yd = args, xd, yd
        self.spaces = args.spaces.split(",")
        self.fixed = {}
        if "eff" in self.spaces:
            self.fixed["eff"] = pca(efficientnet_features(xd, args.eff_size, args.eff_cache), 128)
        if "pix" in self.spaces:
            self.fixed["pix"] = pca(xd.reshape(len(xd), -1).astype(np.float32) / 255, 64)
        self.round = 0

    def groups(self, model) -> np.ndarray:
        a = self.args
        if a.scheme == "oracle":
            rng = np.random.default_rng(a.seed)
            noisy = self.yd.copy()
            wrong = rng.random(len(noisy)) < a.noise
            noisy[wrong] = (noisy[wrong] + rng.integers(1, 10, wrong.sum())) % 10
            return noisy
        spaces = dict(self.fixed)
        if "ours" in self.spaces:
            spaces["ours"] = model.embed(self.xd)
        seed = a.seed * 1000 + self.round
        self.round += 1
        if a.scheme == "concat":
            unit = [s / np.linalg.norm(s, axis=1, keepdims=True) for s in spaces.values()]
            return spherical_kmeans(np.hstack(unit), a.k, seed=seed)
        groups = consensus_groups([spherical_kmeans(s, a.k, seed=seed + i) for i, s in enumerate(spaces.values())])
        if a.scheme == "oracle-consensus":
            groups = groups * 10 + self.yd
        return groups


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--scheme", default="consensus", choices=["none", "consensus", "concat", "cross", "oracle", "oracle-consensus"]
    )
    p.add_argument("--k-eff", type=int, default=300, help="cross: nearest in EfficientNet features")
    p.add_argument("--k-pix", type=int, default=300, help="cross: nearest in pixels")
    p.add_argument("--exclude-ours", type=int, default=0, help="cross: minus the nearest in our features")
    p.add_argument("--within-ours", type=int, default=0, help="cross: only among the nearest in our features")
    p.add_argument("--cache-dir", default="", help="cross: keep the fixed spaces' neighbour lists here")
    p.add_argument("--spaces", default="ours,eff,pix", help="comma-separated: ours, eff, pix")
    p.add_argument("--k", type=int, default=50, help="clusters per space")
    p.add_argument("--p", type=float, default=0.5, help="chance that view B comes from a partner")
    p.add_argument("--noise", type=float, default=0.0, help="oracle: share of partners from a wrong class")
    p.add_argument("--init", help="model.pt to fine-tune (else a fresh cnn28)")
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64, help="batch size (also with --init)")
    p.add_argument("--tau", type=float, default=0.3, help="CQC temperature (also with --init)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eff-size", type=int, default=64, help="image side the EfficientNet sees (resized)")
    p.add_argument("--eff-cache", default="", help=".npy file for the EfficientNet features of the 50k images")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    xd, yd, xq, yq = heldout_split()
    run = dict(lr=args.lr, seed=args.seed, batch_size=args.batch, tau=args.tau)
    cfg = SPQConfig(bits=args.bits, crop_scale=(0.8, 1.0), **run)
    resumed = os.path.join(args.out, "model.pt")  # mine the first groups from where a resumed run stands
    init = resumed if os.path.exists(resumed) else args.init
    if init:
        trained = SPQModel.load(init)
        if trained.cfg.bits != args.bits:
            p.error(f"--init has {trained.cfg.bits} bits, not --bits {args.bits}")
        cfg = dataclasses.replace(trained.cfg, **run)  # keeps the rest, e.g. normalize_subspaces
    model = SPQModel(cfg, "cnn28")
    if init:
        model.load_state_dict(trained.state_dict())
    mining = Mining(args, xd, yd)
    partners = None
    if args.scheme == "cross":
        cache = (lambda name: os.path.join(args.cache_dir, name)) if args.cache_dir else (lambda name: "")
        ours_k = max(args.within_ours, args.exclude_ours)
        near_ours = knn(model.embed(xd), ours_k) if ours_k else None
        indptr, indices = cross_space_candidates(
            knn(mining.fixed["eff"], args.k_eff, cache(f"knn_eff{args.eff_size}.npy")),
            knn(mining.fixed["pix"], args.k_pix, cache("knn_pix.npy")),
            within=near_ours[:, : args.within_ours] if args.within_ours else None,
            exclude=near_ours[:, : args.exclude_ours] if args.exclude_ours else None,
        )
        partners = ListPartners(indptr, indices, p=args.p, seed=args.seed)
        owner = np.repeat(np.arange(len(xd)), np.diff(indptr))
        same = np.bincount(owner, weights=yd[indices] == yd[owner], minlength=len(xd)) / np.maximum(np.diff(indptr), 1)
        start = {"purity": round(float(same[np.diff(indptr) > 0].mean()), 4), "candidates": int(len(indices))}
    elif args.scheme != "none":
        partners = GroupPartners(mining.groups(model), p=args.p, seed=args.seed)
        start = {"purity": round(pair_purity(partners.groups, yd)[0], 4)}
    else:
        start = {}
    print(json.dumps({"epoch": 0, **start}), flush=True)

    def on_epoch_end(epoch: int, model: SPQModel):
        row = {}
        if isinstance(partners, GroupPartners):
            purity, size = pair_purity(partners.groups, yd)  # of the groups this epoch trained with
            row.update(purity=round(purity, 4), group_size=round(size))
            if args.scheme != "oracle":
                t = time.perf_counter()
                partners.set_groups(mining.groups(model))
                row["mining_seconds"] = round(time.perf_counter() - t)
        if epoch % args.step == 0 or epoch == args.epochs:
            row.update(heldout_row(model, xd, yd, xq, yq))
        print(json.dumps({"epoch": epoch, **row}), flush=True)
        return row

    fit_heldout(model, xd, args.epochs, args.out, on_epoch_end, partners=partners)


if __name__ == "__main__":
    main()

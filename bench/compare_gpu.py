"""The CUDA path against a straightforward PyTorch GPU baseline (LUT gather + torch.topk).

    python bench/compare_gpu.py                 # 10M codes, M in {8,16}, nbits in {4,8}, nq in {1,1000}, k in {10,1000}
    python bench/compare_gpu.py --n 1000000     # smaller database
    python bench/compare_gpu.py --json out.json # also write the rows as JSON

The database is random packed codes (throughput does not depend on where codes come from), dim 128
(dsub = 128 / M), metric "l2". For every configuration it prints the queries per second of
  * spqindex (host numpy queries, the whole call: upload, search, results back),
  * spqindex (torch CUDA queries, read in place),
  * the PyTorch baseline (LUT computed with torch, scores gathered per sub-space in database tiles,
    torch.topk per tile then over the tile winners),
and, at nq=1, the memory bandwidth achieved by the search (code bytes / device time of the search,
from CUDA events) against the card's peak. Each spqindex result of the first queries is checked
against the CPU index (identical ids and distance bits).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

import numpy as np

# Peak bandwidth by name, used when the driver does not report the memory clock (GB/s).
PEAK_GBS = {
    "H200": 4800.0,
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0,
    "A100-SXM4-40GB": 1555.0,
    "A100-PCIE-40GB": 1555.0,
    "L40S": 864.0,
    "L4": 300.0,
}


def peak_bandwidth(info: dict) -> float:
    if info.get("peak_bandwidth_gbs", 0) > 0:
        return float(info["peak_bandwidth_gbs"])
    for key, value in PEAK_GBS.items():
        if key in info.get("name", ""):
            return value
    return float("nan")


def timed(fn, repeat: int, min_seconds: float = 0.2):
    """Best wall time of `repeat` calls (after one warm-up), stopping early past min_seconds*repeat."""
    fn()
    best = float("inf")
    t_start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - t_start > min_seconds * repeat:
            break
    return best


class TorchBaseline:
    """LUT gather + torch.topk, the straightforward way: per database tile, scores (nq, tile) are
    summed from M index_selects of the flattened LUT, then torch.topk; a final topk merges."""

    def __init__(self, torch, codebooks: np.ndarray, codes: np.ndarray, nbits: int, device: str = "cuda"):
        self.torch = torch
        M, K, dsub = codebooks.shape
        self.M, self.K, self.dsub = M, K, dsub
        dev = self.device = torch.device(device)
        self.cb = torch.from_numpy(codebooks).to(dev)  # (M, K, dsub)
        c = torch.from_numpy(codes).to(dev)
        if nbits == 8:
            sub = c.long()
        else:  # 4-bit: code 2i in the low nibble of byte i
            sub = torch.stack([c & 15, c >> 4], dim=2).reshape(c.shape[0], -1)[:, :M].long()
        # flat LUT index m * K + code_m, layout (M, n)
        self.flat = (sub + torch.arange(M, device=dev) * K).t().contiguous()
        self.n = codes.shape[0]

    def search(self, q, k: int, tile_bytes: int = 2 << 30):
        torch = self.torch
        nq = q.shape[0]
        qs = q.view(nq, self.M, 1, self.dsub)
        lut = ((qs - self.cb.unsqueeze(0)) ** 2).sum(-1).reshape(nq, self.M * self.K)
        tile = max(k, min(self.n, tile_bytes // (4 * nq)))
        best_d, best_i = [], []
        for r0 in range(0, self.n, tile):
            r1 = min(self.n, r0 + tile)
            s = lut.index_select(1, self.flat[0, r0:r1])
            for m in range(1, self.M):
                s += lut.index_select(1, self.flat[m, r0:r1])
            d, i = torch.topk(s, min(k, r1 - r0), dim=1, largest=False)
            best_d.append(d)
            best_i.append(i + r0)
        d = torch.cat(best_d, 1)
        i = torch.cat(best_i, 1)
        d, j = torch.topk(d, k, dim=1, largest=False)
        i = torch.gather(i, 1, j)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return d, i


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--M", default="8,16")
    p.add_argument("--nbits", default="4,8")
    p.add_argument("--nq", default="1,1000")
    p.add_argument("--k", default="10,1000")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-baseline", action="store_true", help="skip the PyTorch baseline")
    p.add_argument("--json", help="write the rows to this JSON file")
    args = p.parse_args(argv)

    import spqindex
    import spqindex.gpu

    if not spqindex.cuda_available():
        print("no CUDA device (or spqindex built without SPQINDEX_CUDA=ON): nothing to measure")
        return 2
    import torch

    info = spqindex.gpu.device_info(0)
    peak = peak_bandwidth(info)
    print(f"device: {info['name']}, {info['sm_count']} SMs, peak memory bandwidth {peak:.0f} GB/s")
    print(f"database: {args.n:,} random codes, dim {args.dim}, metric l2; torch {torch.__version__}")
    rng = np.random.default_rng(0)
    rows = []
    header = (
        f"{'M':>3} {'nbits':>5} {'nq':>5} {'k':>5} | {'spq QPS':>10} {'spq QPS(t)':>10} "
        f"{'dev ms':>8} | {'torch QPS':>10} {'x torch':>8} | {'GB/s':>7} {'% peak':>6} | exact"
    )
    print(header)
    print("-" * len(header))
    for M in [int(v) for v in args.M.split(",")]:
        for nbits in [int(v) for v in args.nbits.split(",")]:
            K, dsub = 1 << nbits, args.dim // M
            codebooks = rng.standard_normal((M, K, dsub)).astype(np.float32)
            index = spqindex.Index(codebooks, metric="l2")
            code_size = (M * nbits + 7) // 8
            codes = rng.integers(0, 256, size=(args.n, code_size), dtype=np.uint8)
            index.add_codes(codes)
            t0 = time.perf_counter()
            gpu = index.to_gpu(0)
            t_upload = time.perf_counter() - t0
            base = None if args.no_baseline else TorchBaseline(torch, codebooks, codes, nbits)
            del codes
            print(f"# M={M} nbits={nbits}: to_gpu {t_upload:.2f} s ({args.n * code_size / 1e6:.0f} MB of codes)")
            for nq in [int(v) for v in args.nq.split(",")]:
                q = rng.standard_normal((nq, args.dim)).astype(np.float32)
                qt = torch.from_numpy(q).cuda()
                for k in [int(v) for v in args.k.split(",")]:
                    # exactness on the first queries
                    nchk = min(nq, 2)
                    Dc, Ic = index.search(q[:nchk], k)
                    Dg, Ig = gpu.search(q, k)
                    exact = bool(
                        np.array_equal(Ig[:nchk], Ic) and np.array_equal(Dg[:nchk].view(np.uint32), Dc.view(np.uint32))
                    )
                    t_host = timed(functools.partial(gpu.search, q, k), args.repeat)
                    dev_ms = gpu.last_search_ms
                    t_dev = timed(functools.partial(gpu.search, qt, k), args.repeat)
                    dev_ms = min(dev_ms, gpu.last_search_ms)
                    t_base = float("nan")
                    if base is not None:
                        t_base = timed(functools.partial(base.search, qt, k), 1 if nq > 1 else args.repeat)
                    gbs = args.n * code_size / (dev_ms * 1e-3) / 1e9 if nq == 1 else float("nan")
                    row = dict(
                        device=info["name"],
                        n=args.n,
                        dim=args.dim,
                        M=M,
                        nbits=nbits,
                        nq=nq,
                        k=k,
                        qps_host=nq / t_host,
                        qps_torch_queries=nq / t_dev,
                        device_ms=dev_ms,
                        qps_torch_baseline=nq / t_base,
                        speedup=t_base / min(t_host, t_dev),
                        bandwidth_gbs=gbs,
                        peak_gbs=peak,
                        exact=exact,
                    )
                    rows.append(row)
                    print(
                        f"{M:>3} {nbits:>5} {nq:>5} {k:>5} | {row['qps_host']:>10.1f} "
                        f"{row['qps_torch_queries']:>10.1f} {dev_ms:>8.3f} | "
                        f"{row['qps_torch_baseline']:>10.1f} {row['speedup']:>8.1f} | "
                        f"{gbs:>7.0f} {100 * gbs / peak:>6.1f} | {'yes' if exact else 'NO'}",
                        flush=True,
                    )
            del gpu, base, index
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    ok = all(r["exact"] for r in rows)
    print("all spqindex GPU results identical to the CPU index" if ok else "MISMATCH between GPU and CPU results")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

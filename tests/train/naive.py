"""Naive references for the SPQ training pieces, written for clarity (loops), not speed."""

import math

import numpy as np


def soft_quantize_loop(x, codebooks, tau_q):
    """Per sample, per sub-space: softmax over codewords of -tau_q * squared distance, weighted codeword sum."""
    M, K, dsub = codebooks.shape
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        for m in range(M):
            sub = x[i, m * dsub : (m + 1) * dsub].astype(np.float64)
            logits = [-tau_q * float(np.sum((sub - codebooks[m, k]) ** 2)) for k in range(K)]
            top = max(logits)
            w = [math.exp(v - top) for v in logits]
            s = sum(w)
            out[i, m * dsub : (m + 1) * dsub] = sum(w[k] / s * codebooks[m, k].astype(np.float64) for k in range(K))
    return out


def nt_xent_loop(u, v, tau, negatives=None, class_prior=0.0):
    """NT-Xent as the SPQ reference builds it: 2B samples [u; v], positives at +-B, all others negatives;
    plus the rows of ``negatives`` (a queue) as negatives of every sample. class_prior > 0: the negatives' sum
    debiased as in Chuang et al. 2020 (their DCL code): max((sum - N tau+ pos) / (1 - tau+), N e^(-1/tau))."""
    h = np.concatenate([u, v]).astype(np.float64)
    extra = np.zeros((0, h.shape[1])) if negatives is None else np.asarray(negatives, np.float64)
    n = h.shape[0]
    B = n // 2
    total = 0.0
    cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    for i in range(n):
        j = i + B if i < B else i - B
        pos = math.exp(cos(h[i], h[j]) / tau)
        negs = [math.exp(cos(h[i], h[k]) / tau) for k in range(n) if k not in (i, j)]
        negs += [math.exp(cos(h[i], e) / tau) for e in extra]
        N = len(negs)
        ng = sum(negs)
        if class_prior:
            ng = max((ng - N * class_prior * pos) / (1 - class_prior), N * math.exp(-1 / tau))
        total += -math.log(pos / (pos + ng))
    return total / n


def map_at_n_spq(ranked_ids, query_labels, db_labels, top_n):
    """Direct port of the SPQ reference's Evaluate_mAP loop (relevance by shared class, one-hot or multi-hot)."""
    ql = np.asarray(query_labels)
    dl = np.asarray(db_labels)
    if ql.ndim == 1:
        C = int(max(ql.max(), dl.max())) + 1
        ql, dl = np.eye(C)[ql], np.eye(C)[dl]
    mean_ap = 0.0
    for i in range(ql.shape[0]):
        retrieval = (ql[i] @ dl.T > 0).astype(np.float64)
        retrieval = retrieval[ranked_ids[i]][:top_n]
        cnt = int(retrieval.sum())
        if cnt == 0:
            continue
        score = np.linspace(1, cnt, cnt)
        index = np.nonzero(retrieval == 1)[0] + 1.0
        mean_ap += (score / index).mean()
    return mean_ap / ql.shape[0]

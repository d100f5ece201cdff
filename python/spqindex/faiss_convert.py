"""Moving product-quantization indexes between FAISS and spqindex (faiss stays optional).

Both libraries store PQ codes in the FAISS ``ProductQuantizer`` byte layout and codebooks as
``(M, K, dsub)`` float32, so a conversion copies codebooks, codes, ids and the metric; nothing is
re-encoded. FAISS fast-scan indexes keep their codes in blocks of 32 with interleaved nibbles; they
are read out row by row through FAISS's own ``CodePacker``.

Metrics: FAISS ``METRIC_L2`` <-> ``"l2"``, ``METRIC_INNER_PRODUCT`` <-> ``"ip"``. ``"spq"`` (sum of
unsquared sub-space distances) has no FAISS equivalent and is refused by ``to_faiss``.
"""

from __future__ import annotations

import numpy as np

SUPPORTED = "IndexPQ, IndexPQFastScan, or either wrapped in IndexIDMap/IndexIDMap2"


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("FAISS conversion needs faiss: pip install faiss-cpu") from None
    return faiss


def _metric_names(faiss) -> dict:
    return {faiss.METRIC_L2: "l2", faiss.METRIC_INNER_PRODUCT: "ip"}


def from_faiss(index):
    """An ``spqindex.Index`` holding the codebooks, codes, ids and metric of a FAISS index.

    Supported: ``IndexPQ``, ``IndexPQFastScan``, and either wrapped in ``IndexIDMap``/``IndexIDMap2``
    (the wrapper's ids are carried over; spqindex needs them unique and non-negative). Other types
    raise TypeError naming the type; inconsistent sizes or parameters spqindex cannot hold raise
    ValueError. The FAISS index is not modified.
    """
    faiss = _faiss()
    if not isinstance(index, faiss.Index):
        raise TypeError(f"index: expected a FAISS index ({SUPPORTED}), got {type(index).__name__}")
    ids = None
    inner = faiss.downcast_index(index)
    if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        ids = faiss.vector_to_array(inner.id_map).astype(np.int64, copy=False)
        wrapper = inner
        inner = faiss.downcast_index(inner.index)
        if inner.d != wrapper.d:
            raise ValueError(f"index: the IndexIDMap has d={wrapper.d} but wraps an index of d={inner.d}")
        if ids.shape[0] != inner.ntotal:
            raise ValueError(f"index: the IndexIDMap holds {ids.shape[0]} ids for {inner.ntotal} vectors")
    if isinstance(inner, faiss.IndexPQFastScan):
        codes = _fastscan_codes(faiss, inner)
    elif type(inner) is faiss.IndexPQ:  # subclasses (e.g. polysemous variants) are not claimed
        codes = faiss.vector_to_array(inner.codes)
    else:
        raise TypeError(f"index: unsupported FAISS index type {type(inner).__name__}; from_faiss supports {SUPPORTED}")
    return _build(faiss, inner, codes, ids)


def _build(faiss, inner, codes: np.ndarray, ids):
    from .index import Index

    pq = inner.pq
    name = type(inner).__name__
    metric = _metric_names(faiss).get(inner.metric_type)
    if metric is None:
        raise ValueError(
            f"index: {name} uses FAISS metric type {inner.metric_type}; "
            "spqindex supports METRIC_L2 and METRIC_INNER_PRODUCT"
        )
    if not inner.is_trained:
        raise ValueError(f"index: the {name} is not trained (no codebooks)")
    if pq.nbits < 1 or pq.nbits > 8:
        raise ValueError(f"index: {name} has nbits={pq.nbits}; spqindex supports 1..8 bits per sub-space")
    if pq.M * pq.dsub != inner.d:
        raise ValueError(f"index: {name} has d={inner.d} but its quantizer M*dsub = {pq.M}*{pq.dsub}")
    centroids = faiss.vector_to_array(pq.centroids)
    if centroids.size != pq.M * pq.ksub * pq.dsub:
        raise ValueError(
            f"index: {name} holds {centroids.size} centroid values, expected M*K*dsub = {pq.M * pq.ksub * pq.dsub}"
        )
    if codes.size != inner.ntotal * pq.code_size:
        raise ValueError(
            f"index: {name} holds {codes.size} code bytes for ntotal={inner.ntotal} vectors of code_size={pq.code_size}"
        )
    out = Index(centroids.reshape(pq.M, pq.ksub, pq.dsub), metric=metric)
    try:
        out.add_codes(codes.reshape(inner.ntotal, pq.code_size), ids=ids)
    except ValueError as e:  # duplicate or negative ids, which FAISS's IndexIDMap allows
        raise ValueError(f"index: its IndexIDMap ids cannot be carried over ({e})") from None
    return out


def _fastscan_codes(faiss, fs) -> np.ndarray:
    """(ntotal, code_size) uint8 codes of an IndexPQFastScan in ProductQuantizer layout."""
    packer = fs.get_CodePacker()
    nvec, block_size, code_size = packer.nvec, packer.block_size, packer.code_size
    blocks = faiss.vector_to_array(fs.codes)
    nblocks = (fs.ntotal + nvec - 1) // nvec
    if blocks.size < nblocks * block_size:
        raise ValueError(
            f"index: IndexPQFastScan holds {blocks.size} code bytes, fewer than "
            f"{nblocks} blocks of {block_size} for ntotal={fs.ntotal}"
        )
    blocks = blocks[: nblocks * block_size].reshape(nblocks, block_size)
    out = np.empty((nblocks * nvec, code_size), dtype=np.uint8)
    for b in range(nblocks):  # one call per block of nvec (32) codes
        packer.unpack_all(faiss.swig_ptr(blocks[b]), faiss.swig_ptr(out[b * nvec :]))
    return out[: fs.ntotal].reshape(-1)


def to_faiss(index):
    """A FAISS ``IndexPQ`` with ``index``'s codebooks, codes and metric; wrapped in an
    ``IndexIDMap2`` when the stored ids are not 0..n-1 in storage order. Metric ``"spq"`` has no
    FAISS equivalent and raises ValueError."""
    faiss = _faiss()
    metric = {v: k for k, v in _metric_names(faiss).items()}.get(index.metric)
    if metric is None:
        raise ValueError(
            f"metric: {index.metric!r} has no FAISS equivalent (FAISS has METRIC_L2 for "
            "'l2' and METRIC_INNER_PRODUCT for 'ip'); build an 'l2' index from the codebooks"
        )
    codebooks = index.codebooks
    M, K, dsub = codebooks.shape
    pq_index = faiss.IndexPQ(M * dsub, M, index.nbits, metric)
    faiss.copy_array_to_vector(np.ascontiguousarray(codebooks.ravel()), pq_index.pq.centroids)
    pq_index.is_trained = True
    codes, ids = index.codes, index.ids
    if np.array_equal(ids, np.arange(len(ids), dtype=np.int64)):
        pq_index.add_sa_codes(codes)
        return pq_index
    wrapped = faiss.IndexIDMap2(pq_index)
    wrapped.add_sa_codes(codes, ids)  # the wrapper keeps a reference to pq_index
    return wrapped

"""A LangChain ``VectorStore`` backed by an ``spqindex.Index`` (extra ``spqindex[langchain]``).

    from spqindex.integrations.langchain import SPQVectorStore
    store = SPQVectorStore(embedding=emb)                  # defaults work for any embedding size
    store.add_texts(texts, metadatas, ids=ids)
    store.similarity_search("query", k=4, filter={"lang": "en"})
    store.save_local("folder"); SPQVectorStore.load_local("folder", emb)

Life of a store: vectors are held as float32 and searched exactly until ``min_train`` of them are
held (or from the start when ``codebooks`` are given); then PQ codebooks are trained on them
(``spqindex.Index.train``), every vector is encoded, and the float copies are dropped unless
``rerank`` > 0. With ``rerank=R`` the PQ search fetches ``max(k, R)`` candidates and re-scores them
exactly from the kept floats, so stores of at most R vectors always answer exactly.

Ids: LangChain's string ids map to int64 index ids (a counter); documents and metadata live in
Python and are saved to a JSON sidecar next to the index file (never pickle). Metadata filters
(a dict of equalities, ``{"key": {"$in": [...]}}``, or a callable on the metadata dict) become an
allow-list of index ids for ``Index.search(q, k, filter=...)``.

Scores (``similarity_search_with_score``): metric ``"l2"`` gives the Euclidean distance (smaller is
closer), ``"ip"`` the inner product, ``"cosine"`` the cosine similarity (vectors normalised, then
inner product); both larger-is-closer.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from .._validate import float_matrix, positive_int
from ..index import Index

METRICS = ("l2", "ip", "cosine")
SIDECAR_FORMAT = "spqindex-langchain"
SIDECAR_VERSION = 1


def default_M(dim: int) -> int:
    """Sub-spaces for a ``dim``-d embedding: dsub = the smallest divisor of dim that is >= 4
    (384-d -> M=96, 48 bytes at 4 bits; 6-d -> M=1)."""
    dsub = next(d for d in range(min(4, dim), dim + 1) if dim % d == 0)
    return dim // dsub


def _index_search(index: Index, q: np.ndarray, k: int, allowed: Optional[np.ndarray]):
    """The one place that calls the filtered search of the index."""
    if allowed is None:
        return index.search(q, k)
    return index.search(q, k, filter=allowed)


class _FloatRows:
    """Float32 vectors by int64 id: rows of one growable array, deletes swap in the last row."""

    def __init__(self, dim: int):
        self.x = np.empty((0, dim), dtype=np.float32)
        self.ids = np.empty(0, dtype=np.int64)
        self.n = 0
        self.row = {}

    def add(self, ids: np.ndarray, x: np.ndarray) -> None:
        need = self.n + len(ids)
        if need > len(self.ids):
            cap = max(need, 2 * len(self.ids), 64)
            self.x = np.concatenate([self.x[: self.n], np.empty((cap - self.n, self.x.shape[1]), np.float32)])
            self.ids = np.concatenate([self.ids[: self.n], np.empty(cap - self.n, np.int64)])
        self.x[self.n : need] = x
        self.ids[self.n : need] = ids
        self.row.update(zip(ids.tolist(), range(self.n, need)))
        self.n = need

    def remove(self, ids: Iterable[int]) -> None:
        for i in ids:
            r = self.row.pop(i, None)
            if r is None:
                continue
            last = self.n - 1
            if r != last:
                self.x[r] = self.x[last]
                self.ids[r] = self.ids[last]
                self.row[int(self.ids[r])] = r
            self.n = last

    def get(self, ids: np.ndarray) -> np.ndarray:
        return self.x[[self.row[i] for i in ids.tolist()]]

    def all(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.ids[: self.n], self.x[: self.n]


def exact_scores(q: np.ndarray, x: np.ndarray, metric: str, rows: int = 4096) -> np.ndarray:
    """(nq, n) float32 scores in the index's convention: squared L2, or inner product."""
    if metric != "l2":
        return (q @ x.T).astype(np.float32)
    out = np.empty((q.shape[0], x.shape[0]), dtype=np.float32)
    for a in range(0, x.shape[0], rows):  # bounded temporaries
        out[:, a : a + rows] = ((x[None, a : a + rows] - q[:, None, :]) ** 2).sum(-1, dtype=np.float32)
    return out


def top_k(scores: np.ndarray, ids: np.ndarray, k: int, larger_better: bool):
    """Best ``k`` of one query's (scores, ids), ties by smaller id."""
    order = np.lexsort((ids, -scores if larger_better else scores))[:k]
    return scores[order], ids[order]


class SPQVectorStore(VectorStore):
    """LangChain vector store on a product-quantization index; see the module docstring.

    Options: ``M`` (default: :func:`default_M` of the embedding size), ``nbits`` (4), ``metric``
    ("l2", "ip" or "cosine"), ``codebooks`` ((M, K, dsub): no training), ``min_train`` (vectors
    held before codebooks are trained; default 40*K), ``rerank`` (0: PQ scores only), ``iters`` and
    ``seed`` of the k-means.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        M: Optional[int] = None,
        nbits: int = 4,
        metric: str = "l2",
        codebooks=None,
        min_train: Optional[int] = None,
        rerank: int = 0,
        iters: int = 20,
        seed: int = 0,
    ):
        if not isinstance(metric, str) or metric not in METRICS:
            raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
        nbits = positive_int(nbits, "nbits")
        if nbits > 8:
            raise ValueError(f"nbits: must be in 1..8, got {nbits}")
        if M is not None:
            M = positive_int(M, "M")
        if isinstance(rerank, bool) or not isinstance(rerank, (int, np.integer)) or rerank < 0:
            raise ValueError(f"rerank: expected a non-negative int, got {rerank!r}")
        self.embedding = embedding
        self.metric = metric
        self.options = dict(
            M=M,
            nbits=nbits,
            metric=metric,
            rerank=int(rerank),
            iters=positive_int(iters, "iters"),
            seed=int(seed),
            min_train=positive_int(min_train if min_train is not None else 40 << nbits, "min_train"),
        )
        self._index: Optional[Index] = None
        self._floats: Optional[_FloatRows] = None
        self._dim: Optional[int] = None
        self._docs = {}  # int id -> (str id, text, metadata)
        self._int_id = {}  # str id -> int id
        self._next_id = 0
        if codebooks is not None:
            self._index = Index(codebooks, metric=self._index_metric)
            self._dim = self._index.dim

    # --- LangChain's interface ---------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    def __len__(self) -> int:
        return len(self._docs)

    @property
    def index(self) -> Optional[Index]:
        """The PQ index, or None while the store still answers from float vectors only."""
        return self._index

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[Sequence[Optional[str]]] = None,
        **kwargs: Any,
    ) -> List[str]:
        """Embeds and stores ``texts``; an id already present is overwritten. Returns the ids."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"metadatas: {len(metadatas)} given for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"ids: {len(ids)} given for {len(texts)} texts")
        str_ids = [str(uuid.uuid4()) if ids is None or ids[i] is None else str(ids[i]) for i in range(len(texts))]
        if len(set(str_ids)) != len(str_ids):
            raise ValueError("ids: contains duplicates")
        if not texts:
            return []
        return self.add_embeddings(self.embedding.embed_documents(texts), texts, metadatas, ids=str_ids)

    def add_embeddings(
        self, vectors, texts: Sequence[str], metadatas: Optional[List[dict]] = None, *, ids: Sequence[str]
    ) -> List[str]:
        """Stores precomputed embeddings (n, dim) with their texts under ``ids``."""
        x = self._prepare(vectors, "embeddings")
        if x.shape[0] != len(texts) or len(ids) != len(texts):
            raise ValueError(f"embeddings: {x.shape[0]} vectors for {len(texts)} texts and {len(ids)} ids")
        if not len(ids):
            return []
        self.delete([i for i in ids if i in self._int_id])  # overwrite = delete + add
        new = np.arange(self._next_id, self._next_id + len(ids), dtype=np.int64)
        if self._index is not None:
            self._index.add(x, ids=new)  # validates first: on error nothing below has run
        if self._index is None or self.options["rerank"]:
            if self._floats is None:
                self._floats = _FloatRows(x.shape[1])
            self._floats.add(new, x)
        self._next_id += len(ids)
        for j, (i, s) in enumerate(zip(new.tolist(), ids)):
            meta = dict(metadatas[j]) if metadatas is not None and metadatas[j] is not None else {}
            self._docs[i] = (s, texts[j], meta)
            self._int_id[s] = i
        if self._index is None and self._floats.n >= self.options["min_train"]:
            self._train()
        return list(ids)

    def delete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        """Deletes the given ids (unknown ones are ignored), or everything when ``ids`` is None."""
        if ids is None:
            ids = [s for s, _, _ in self._docs.values()]
        gone = [self._int_id.pop(str(s)) for s in ids if str(s) in self._int_id]
        for i in gone:
            del self._docs[i]
        if gone:
            if self._index is not None:
                self._index.remove(np.asarray(gone, dtype=np.int64))
            if self._floats is not None:
                self._floats.remove(gone)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        out = []
        for s in ids:
            i = self._int_id.get(str(s))
            if i is not None:
                out.append(self._document(i))
        return out

    def similarity_search(self, query: str, k: int = 4, filter=None, **kwargs: Any) -> List[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter=filter)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter=None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(self.embedding.embed_query(query), k, filter=filter)

    def similarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter=None, **kwargs: Any
    ) -> List[Document]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter=filter)]

    def similarity_search_with_score_by_vector(
        self, embedding: List[float], k: int = 4, filter=None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        k = positive_int(k, "k")
        if not self._docs:
            return []
        q = self._prepare([embedding], "embedding")
        scores, ids = self._search(q, k, self._allowed(filter))
        return [(self._document(i), self._user_score(s)) for s, i in zip(scores.tolist(), ids.tolist())]

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, filter=None, **kwargs: Any
    ) -> List[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self.embedding.embed_query(query), k, fetch_k, lambda_mult, filter=filter
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: List[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter=None,
        **kwargs: Any,
    ) -> List[Document]:
        """MMR over the ``fetch_k`` nearest: the candidates' vectors are the kept floats, or the
        PQ reconstructions once the floats are dropped."""
        from langchain_core.vectorstores.utils import maximal_marginal_relevance

        k, fetch_k = positive_int(k, "k"), positive_int(fetch_k, "fetch_k")
        if not self._docs:
            return []
        q = self._prepare([embedding], "embedding")
        _, ids = self._search(q, max(k, fetch_k), self._allowed(filter))
        if ids.size == 0:
            return []
        vecs = self._floats.get(ids) if self._floats is not None else self._index.reconstruct(ids)
        chosen = maximal_marginal_relevance(q[0], vecs, lambda_mult=lambda_mult, k=k)
        return [self._document(int(ids[j])) for j in chosen]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.metric == "l2":
            return self._euclidean_relevance_score_fn
        if self.metric == "cosine":
            return lambda s: (1.0 + s) / 2.0
        return self._max_inner_product_relevance_score_fn

    @classmethod
    def from_texts(
        cls,
        texts: List[str],
        embedding: Embeddings,
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> "SPQVectorStore":
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    # --- persistence ---------------------------------------------------------------------------
    def save_local(self, folder_path, index_name: str = "index") -> None:
        """Writes ``{index_name}.spqidx`` (the index file, once trained), ``{index_name}.vectors.npy``
        (float vectors, while held) and ``{index_name}.json`` (documents, metadata, options), the
        JSON last. Metadata must be JSON-serialisable."""
        os.makedirs(folder_path, exist_ok=True)
        base = os.path.join(os.fspath(folder_path), index_name)
        docs = [[i, s, text, meta] for i, (s, text, meta) in self._docs.items()]
        try:
            sidecar = json.dumps(
                {
                    "format": SIDECAR_FORMAT,
                    "version": SIDECAR_VERSION,
                    "options": self.options,
                    "dim": self._dim,
                    "next_id": self._next_id,
                    "trained": self._index is not None,
                    "documents": docs,
                }
            )
        except TypeError as e:
            raise TypeError(f"metadata: cannot be saved as JSON ({e})") from None
        for suffix in (".spqidx", ".vectors.npy"):
            if os.path.exists(base + suffix):
                os.remove(base + suffix)
        if self._index is not None:
            self._index.save(base + ".spqidx")
        if self._floats is not None:
            ids, x = self._floats.all()
            _write_atomic(base + ".vectors.npy", lambda f: (np.save(f, ids), np.save(f, x)))
        _write_atomic(base + ".json", lambda f: f.write(sidecar.encode()))

    @classmethod
    def load_local(
        cls, folder_path, embeddings: Embeddings, index_name: str = "index", **kwargs: Any
    ) -> "SPQVectorStore":
        """Reads a store written by ``save_local`` (no pickle anywhere)."""
        base = os.path.join(os.fspath(folder_path), index_name)
        with open(base + ".json", encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != SIDECAR_FORMAT or meta.get("version") != SIDECAR_VERSION:
            raise ValueError(f"folder_path: {base}.json is not an {SIDECAR_FORMAT} v{SIDECAR_VERSION} sidecar")
        kwargs.pop("allow_dangerous_deserialization", None)  # FAISS-store habit; nothing here unpickles
        store = cls(embeddings, **{**meta["options"], **kwargs})
        store._dim, store._next_id = meta["dim"], int(meta["next_id"])
        for i, s, text, md in meta["documents"]:
            store._docs[int(i)] = (s, text, md)
            store._int_id[s] = int(i)
        held = set(store._docs)
        if meta["trained"]:
            store._index = Index.load(base + ".spqidx")
            if set(store._index.ids.tolist()) != held:
                raise ValueError(f"folder_path: {base}.spqidx does not hold the sidecar's documents")
        if os.path.exists(base + ".vectors.npy"):
            with open(base + ".vectors.npy", "rb") as f:
                ids, x = np.load(f, allow_pickle=False), np.load(f, allow_pickle=False)
            if set(ids.tolist()) != held or x.shape != (len(ids), store._dim):
                raise ValueError(f"folder_path: {base}.vectors.npy does not hold the sidecar's documents")
            store._floats = _FloatRows(x.shape[1])
            store._floats.add(ids.astype(np.int64), x)
        elif not meta["trained"] and held:
            raise ValueError(f"folder_path: {base}.vectors.npy is missing")
        return store

    # --- internals -----------------------------------------------------------------------------
    @property
    def _index_metric(self) -> str:
        return "l2" if self.metric == "l2" else "ip"

    def _prepare(self, vectors, name: str) -> np.ndarray:
        """(n, dim) float32, normalised for "cosine"; fixes the store's dim on first use."""
        x = float_matrix(
            np.asarray(vectors, dtype=np.float32) if isinstance(vectors, list) else vectors, name, self._dim
        )
        if self._dim is None:
            if x.shape[0] == 0:
                return x
            self._dim = x.shape[1]
        if self.metric == "cosine":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.where(norms > 0, norms, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _train(self) -> None:
        """Codebooks from every held vector; encode them all; drop the floats unless reranking."""
        ids, x = self._floats.all()
        o = self.options
        M = o["M"] or default_M(x.shape[1])
        index = Index.train(x, M=M, nbits=o["nbits"], metric=self._index_metric, iters=o["iters"], seed=o["seed"])
        index.add(x, ids=ids)
        self._index = index
        if not o["rerank"]:
            self._floats = None

    def _allowed(self, filter) -> Optional[np.ndarray]:
        """The int ids whose metadata pass ``filter`` (None: no filter)."""
        if filter is None:
            return None
        if callable(filter):
            test = filter
        elif isinstance(filter, dict):
            test = _dict_filter(filter)
        else:
            raise TypeError(f"filter: expected a dict or a callable on the metadata, got {type(filter).__name__}")
        return np.fromiter((i for i, (_, _, m) in self._docs.items() if test(m)), dtype=np.int64)

    def _search(self, q: np.ndarray, k: int, allowed: Optional[np.ndarray]):
        """Best ``k`` (scores in the index convention, int ids) for one query."""
        larger = self._index_metric == "ip"
        if allowed is not None and allowed.size == 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        if self._index is None:
            ids, x = self._floats.all()
            if allowed is not None:
                rows = np.fromiter((self._floats.row[i] for i in allowed.tolist()), dtype=np.int64)
                ids, x = ids[rows], x[rows]
            return top_k(exact_scores(q, x, self._index_metric)[0], ids, k, larger)
        rerank = self.options["rerank"] if self._floats is not None else 0
        D, I = _index_search(self._index, q, max(k, rerank), allowed)
        keep = I[0] >= 0
        D, I = D[0][keep], I[0][keep]
        if rerank:
            D = exact_scores(q, self._floats.get(I), self._index_metric)[0]
            return top_k(D, I, k, larger)
        return D[:k], I[:k]

    def _user_score(self, s: float) -> float:
        return float(np.sqrt(max(s, 0.0))) if self.metric == "l2" else float(s)

    def _document(self, i: int) -> Document:
        s, text, meta = self._docs[i]
        return Document(page_content=text, metadata=dict(meta), id=s)


def _dict_filter(spec: dict) -> Callable[[dict], bool]:
    """{"key": value} equality, {"key": {"$in": [...]}}, {"key": {"$ne": value}}; all keys must match."""
    tests = []
    for key, cond in spec.items():
        if isinstance(cond, dict):
            if len(cond) != 1 or next(iter(cond)) not in ("$in", "$nin", "$eq", "$ne"):
                raise ValueError(
                    f"filter: condition on {key!r} must be a value or one of $eq/$ne/$in/$nin, got {cond!r}"
                )
            op, val = next(iter(cond.items()))
            tests.append(_condition(key, op, val))
        else:
            tests.append(_condition(key, "$eq", cond))
    return lambda meta: all(t(meta) for t in tests)


def _condition(key, op: str, val) -> Callable[[dict], bool]:
    missing = object()
    if op in ("$in", "$nin"):
        if not isinstance(val, (list, tuple, set)):
            raise ValueError(f"filter: {op} on {key!r} needs a list, got {type(val).__name__}")
        inside = lambda m: m.get(key, missing) in val
        return inside if op == "$in" else (lambda m: not inside(m))
    if op == "$eq":
        return lambda m: m.get(key, missing) == val
    return lambda m: m.get(key, missing) != val


def _write_atomic(path: str, write: Callable) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

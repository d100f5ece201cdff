"""SPQVectorStore against LangChain's own standard suite, plus what the suite does not cover:
training, re-ranking, metadata filters, save/load, bad inputs."""

import json

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="the langchain extra: pip install 'spqindex[langchain]'")
pytest.importorskip("langchain_tests", reason="the langchain extra: pip install 'spqindex[langchain]'")

from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from spqindex.integrations.langchain import SPQVectorStore, default_M  # noqa: E402

# LangChain's suite leaves its async tests unmarked (its packages run pytest-asyncio in auto mode);
# mark the module, and silence the notice this gives on the suite's sync tests.
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'"),
]


class TestSPQVectorStoreStandard(VectorStoreIntegrationTests):
    """LangChain's standard suite (sync and async), every test of it, none skipped."""

    @pytest.fixture()
    def vectorstore(self):
        return SPQVectorStore(embedding=self.get_embeddings())


class TestSPQVectorStoreStandardTrained(VectorStoreIntegrationTests):
    """The same suite on a store that holds PQ codebooks from the start (no float vectors)."""

    @pytest.fixture()
    def vectorstore(self):
        emb = self.get_embeddings()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((400, len(emb.embed_query("x")))).astype(np.float32)
        from spqindex import Index

        cb = Index.train(x, M=3, nbits=8, iters=5).codebooks  # 256 codewords of 2-d: the suite's few texts are apart
        return SPQVectorStore(embedding=emb, codebooks=cb, rerank=10)


def fake(size=6):
    return DeterministicFakeEmbedding(size=size)


def texts(n, prefix="t"):
    return [f"{prefix}{i}" for i in range(n)]


def exact_ranking(store, emb, query, docs_text, k):
    """Brute force in float64 over the texts' embeddings: the ranking an exact store returns."""
    x = np.asarray(emb.embed_documents(docs_text), dtype=np.float64)
    q = np.asarray(emb.embed_query(query), dtype=np.float64)
    d = ((x - q) ** 2).sum(1)
    return [docs_text[i] for i in np.argsort(d, kind="stable")[:k]]


def test_defaults_for_any_embedding_size():
    assert default_M(6) == 1 and default_M(384) == 96 and default_M(7) == 1 and default_M(32) == 8
    for size in (1, 6, 384):
        store = SPQVectorStore.from_texts(texts(5), fake(size))
        assert len(store.similarity_search("t3", k=2)) == 2


def test_untrained_store_is_exact_and_trains_at_min_train():
    emb = fake(16)
    store = SPQVectorStore(emb, M=4, nbits=4, min_train=300)
    corpus = texts(299)
    store.add_texts(corpus)
    assert store.index is None  # 299 < min_train: float vectors only, exact answers
    got = [d.page_content for d in store.similarity_search("query", k=10)]
    assert got == exact_ranking(store, emb, "query", corpus, 10)
    store.add_texts(["one more"])
    assert store.index is not None and len(store.index) == 300 and store.index.M == 4
    assert store._floats is None  # rerank=0: codes only after training
    assert len(store.similarity_search("query", k=10)) == 10


def test_rerank_keeps_small_stores_exact():
    emb = fake(16)
    corpus = texts(500)
    store = SPQVectorStore.from_texts(corpus, emb, M=2, nbits=2, min_train=100, rerank=500)
    assert store.index is not None and store.index.code_size == 1  # a very coarse PQ ...
    got = store.similarity_search_with_score("query", k=20)
    # ... but every vector is a re-ranked candidate, so the result is the exact ranking
    assert [d.page_content for d, _ in got] == exact_ranking(store, emb, "query", corpus, 20)
    q = np.asarray(emb.embed_query("query"))
    d0 = np.asarray(emb.embed_query(got[0][0].page_content))
    assert got[0][1] == pytest.approx(np.linalg.norm(q - d0), rel=1e-5)
    coarse = SPQVectorStore.from_texts(corpus, emb, M=2, nbits=2, min_train=100)
    assert [d.page_content for d in coarse.similarity_search("query", k=20)] != exact_ranking(
        store, emb, "query", corpus, 20
    )  # without re-ranking the 1-byte codes lose order


def test_search_by_vector_and_scores():
    emb = fake(8)
    store = SPQVectorStore.from_texts(texts(50), emb, metric="cosine")
    v = emb.embed_query("t7")
    assert store.similarity_search_by_vector(v, k=1)[0].page_content == "t7"
    ((doc, score),) = store.similarity_search_with_score("t7", k=1)
    assert doc.page_content == "t7" and score == pytest.approx(1.0, abs=1e-5)
    rel = store.similarity_search_with_relevance_scores("t7", k=3)
    assert rel[0][1] == pytest.approx(1.0, abs=1e-5) and all(0 <= r <= 1 for _, r in rel)
    mmr = store.max_marginal_relevance_search("t7", k=3, fetch_k=10)
    assert len(mmr) == 3 and mmr[0].page_content == "t7"


def _filter_store(trained):
    corpus = texts(400)
    metas = [{"parity": i % 2, "bucket": i % 5} for i in range(400)]
    return corpus, SPQVectorStore.from_texts(
        corpus, fake(8), metas, ids=corpus, rerank=400 if trained else 0, min_train=100 if trained else 10_000
    )


def _check_filters(store, corpus):
    docs = store.similarity_search("query", k=15, filter={"parity": 1})
    assert len(docs) == 15 and all(d.metadata["parity"] == 1 for d in docs)
    odd = [t for i, t in enumerate(corpus) if i % 2]
    assert [d.page_content for d in docs] == exact_ranking(store, store.embeddings, "query", odd, 15)
    docs = store.similarity_search("query", k=400, filter={"bucket": {"$in": [1, 3]}, "parity": 0})
    assert {d.page_content for d in docs} == {t for i, t in enumerate(corpus) if i % 5 in (1, 3) and i % 2 == 0}
    assert store.similarity_search("query", k=5, filter=lambda m: m["bucket"] == 4 and m["parity"] == 1)[
        0
    ].metadata == {"parity": 1, "bucket": 4}
    assert store.similarity_search("query", k=5, filter={"parity": 7}) == []


def test_metadata_filters_before_training():
    corpus, store = _filter_store(trained=False)
    assert store.index is None
    _check_filters(store, corpus)


def test_metadata_filters_map_onto_the_filtered_index_search():
    corpus, store = _filter_store(trained=True)
    assert store.index is not None
    _check_filters(store, corpus)


@pytest.mark.parametrize("trained", [False, True])
def test_save_and_load_local(tmp_path, trained):
    emb = fake(8)
    corpus = texts(300)
    metas = [{"n": i, "tags": ["a", str(i)]} for i in range(300)]
    store = SPQVectorStore.from_texts(
        corpus, emb, metas, ids=[f"id{i}" for i in range(300)], min_train=200 if trained else 1000, rerank=50
    )
    store.delete(["id3", "id4"])
    store.save_local(tmp_path / "s")
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == (
        ["index.json", "index.spqidx", "index.vectors.npy"] if trained else ["index.json", "index.vectors.npy"]
    )
    sidecar = json.loads((tmp_path / "s" / "index.json").read_text())
    assert sidecar["format"] == "spqindex-langchain" and len(sidecar["documents"]) == 298
    back = SPQVectorStore.load_local(tmp_path / "s", emb)
    assert len(back) == 298 and back.get_by_ids(["id5", "id3"]) == store.get_by_ids(["id5"])
    for q in ("t10", "query", "zzz"):
        assert back.similarity_search_with_score(q, k=12) == store.similarity_search_with_score(q, k=12)
    ids = back.add_texts(["new"], [{"n": -1}])
    assert back.get_by_ids(ids)[0].metadata == {"n": -1}


def test_metadata_that_json_cannot_hold_is_refused(tmp_path):
    store = SPQVectorStore.from_texts(["a"], fake(), [{"obj": object()}])
    with pytest.raises(TypeError, match="metadata: cannot be saved as JSON"):
        store.save_local(tmp_path)
    assert not (tmp_path / "index.json").exists()


def test_bad_inputs_name_the_argument_and_leave_the_store_unchanged():
    with pytest.raises(ValueError, match="metric"):
        SPQVectorStore(fake(), metric="manhattan")
    with pytest.raises(ValueError, match="rerank"):
        SPQVectorStore(fake(), rerank=-1)
    store = SPQVectorStore.from_texts(texts(3), fake(6), ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="ids: contains duplicates"):
        store.add_texts(["x", "y"], ids=["d", "d"])
    with pytest.raises(ValueError, match="metadatas"):
        store.add_texts(["x"], [{}, {}])
    with pytest.raises(ValueError, match="embedding: expected 6 columns"):
        store.similarity_search_by_vector([0.0] * 5)
    with pytest.raises(ValueError, match="embeddings: expected 6 columns"):
        store.add_embeddings(np.zeros((1, 5)), ["x"], ids=["a"])
    with pytest.raises(TypeError, match="filter"):
        store.similarity_search("a", filter="parity == 1")
    with pytest.raises(ValueError, match=r"filter: condition on 'p'"):
        store.similarity_search("a", filter={"p": {"$gt": 1}})
    with pytest.raises(ValueError, match="codebooks"):
        SPQVectorStore(fake(), codebooks=np.zeros((2, 3, 3), np.float32))
    assert len(store) == 3 and [d.id for d in store.get_by_ids(["a", "b", "c"])] == ["a", "b", "c"]


def test_empty_adds_and_delete_all():
    store = SPQVectorStore(fake())
    assert store.add_texts([]) == [] and store.add_embeddings(np.zeros((0, 6)), [], ids=[]) == []
    assert store.similarity_search("a") == []
    store.add_texts(texts(700))  # past min_train (640 at 4 bits): trained
    assert store.index is not None
    store.delete()
    assert len(store) == 0 and len(store.index) == 0 and store.similarity_search("t1") == []

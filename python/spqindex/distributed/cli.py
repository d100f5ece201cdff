"""``spqindex shard build|search|info``: the sharded index from the command line.

Registered by ``spqindex.cli``; ray is imported only when a command runs (``info`` needs none).
"""

from __future__ import annotations

import json
import os
import sys


def add_parser(sub) -> None:
    """Adds the ``shard`` command (with build/search/info) to the ``spqindex`` subparsers."""
    p = sub.add_parser(
        "shard",
        help="a sharded index on a Ray cluster: build, search, info",
        description="Build a sharded index from vector files with Ray Data, search it exactly "
        "over Ray actors, or print its manifest. --address auto joins a running "
        "cluster; without it a local Ray instance is started.",
    )
    p.set_defaults(run=_run)
    cmds = p.add_subparsers(dest="shard_command", metavar="ACTION", parser_class=type(p))
    cmds.required = True

    b = cmds.add_parser("build", help="encode vector files (.npy or Parquet) into shard files + manifest")
    b.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="FILE",
        help=".npy files, or Parquet files/folders (one vector column, optional id column)",
    )
    b.add_argument("--out", required=True, help="directory for the shard files and manifest.json (new)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--codebooks", metavar="INDEX", help="an index file whose codebooks and metric are used")
    src.add_argument("--model", metavar="MODEL", help="a trained SPQ model.pt (or run folder): data are images")
    b.add_argument("--metric", choices=("l2", "spq", "ip"), default=None, help="override the index file's metric")
    b.add_argument("--column", default=None, help="the vector (or image) column (default: the only one)")
    b.add_argument("--id-column", default=None, help="a column of int64 ids (default: sequential ids)")
    b.add_argument("--shards", type=int, default=4, help="number of shards (default: 4)")
    b.add_argument("--batch-size", type=int, default=4096, help="rows per encoding batch (default: 4096)")
    _add_cluster(b)
    b.add_argument("--quiet", action="store_true", help="no progress bars")

    s = cmds.add_parser("search", help="exact top-k of query vectors (.npy) over all shards")
    s.add_argument("directory", help="directory of a sharded index")
    s.add_argument("--queries", required=True, help=".npy file of query vectors (n, dim)")
    s.add_argument("-k", type=int, default=10, help="results per query (default: 10)")
    s.add_argument(
        "--allow-partial",
        action="store_true",
        help="answer from the shards that respond and name the missing ones (default: fail)",
    )
    s.add_argument("--json", action="store_true", help="one JSON object per query")
    _add_cluster(s)

    i = cmds.add_parser("info", help="the manifest: metric, sizes, shard files (no Ray needed)")
    i.add_argument("directory", help="directory of a sharded index")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")


def _add_cluster(p) -> None:
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join ('auto' or host:port; default: $RAY_ADDRESS, else a local instance)",
    )
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs per shard actor (default: fractional share)")


def _run(args) -> int:
    try:
        return {"build": _build, "search": _search, "info": _info}[args.shard_command](args)
    except (RuntimeError, TimeoutError) as e:
        print(f"spqindex shard {args.shard_command}: error: {e}", file=sys.stderr)
        return 1


def _actor_options(args) -> dict:
    return {} if args.num_cpus is None else {"num_cpus": args.num_cpus}


def _build(args) -> int:
    import spqindex
    from .build import build_sharded

    if args.shards < 1:
        raise ValueError(f"--shards: expected a positive integer, got {args.shards}")
    codebooks = None if args.codebooks is None else spqindex.Index.load(args.codebooks, mmap=True)
    sx = build_sharded(
        args.data,
        args.out,
        codebooks=codebooks,
        metric=args.metric,
        model=args.model,
        column=args.column,
        id_column=args.id_column,
        num_shards=args.shards,
        batch_size=args.batch_size,
        progress=not args.quiet,
        address=args.address,
        **_actor_options(args),
    )
    print(f"{len(sx)} vectors in {sx.num_shards} shards under {sx.directory} (metric {sx.metric})")
    sx.close()
    return 0


def _search(args) -> int:
    import numpy as np

    from .sharded import ShardedIndex

    q = np.load(args.queries, allow_pickle=False)
    with ShardedIndex.open(args.directory, address=args.address, **_actor_options(args)) as sx:
        out = sx.search(q, args.k, allow_partial=args.allow_partial)
    D, I = out[0], out[1]
    missing = out[2] if args.allow_partial else []
    if missing:
        print(f"warning: shards {missing} did not answer; results come from the others", file=sys.stderr)
    for row in range(len(I)):
        keep = I[row] >= 0
        if args.json:
            print(
                json.dumps({"query": row, "ids": I[row][keep].tolist(), "distances": [float(d) for d in D[row][keep]]})
            )
        else:
            print(f"query {row}: " + " ".join(f"{i}:{d:.6g}" for i, d in zip(I[row][keep], D[row][keep])))
    return 0


def _info(args) -> int:
    from .manifest import read_manifest

    m = read_manifest(args.directory)
    if args.json:
        print(json.dumps(m, indent=1, sort_keys=True))
        return 0
    print(
        f"{args.directory}: {m.get('ntotal')} vectors, {len(m['shards'])} shards, metric {m['metric']}, "
        f"dim {m.get('dim')}, M {m.get('M')}, nbits {m.get('nbits')}, ids {m['id_mode'] or 'none yet'}, "
        f"generation {m['generation']}"
    )
    for s, e in enumerate(m["shards"]):
        path = os.path.join(args.directory, e["file"])
        size = os.path.getsize(path) if os.path.exists(path) else None
        print(
            f"  shard {s}: {e['file']}  {e['count']} vectors  " + (f"{size} bytes" if size is not None else "MISSING")
        )
    return 0

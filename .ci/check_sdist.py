"""Checks an sdist holds the sources and nothing else: no build outputs, runs, venvs, binaries or models.

python .ci/check_sdist.py dist/spqindex-X.tar.gz
"""

import sys
import tarfile

REQUIRED = (
    "LICENSE",
    "README.md",
    "pyproject.toml",
    "CMakeLists.txt",
    "python/spqindex/__init__.py",
    "cpp/src/index.cpp",
    "tests/test_index.py",
)
FORBIDDEN_DIRS = {"build", "dist", "runs", ".venv", "__pycache__", ".pytest_cache", "spqindex-demo", ".git"}
FORBIDDEN_SUFFIXES = (".so", ".o", ".a", ".whl", ".pt", ".pth", ".ckpt", ".npy", ".npz", ".spq", ".pyc")
MAX_FILE_BYTES = 1 << 20  # the largest source file is far below this; a model or data file is not


def main(path: str) -> int:
    problems = []
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    root = members[0].name.split("/", 1)[0]
    names = {m.name.split("/", 1)[1]: m.size for m in members}
    for name in REQUIRED:
        if name not in names:
            problems.append(f"missing {name}")
    for name, size in sorted(names.items()):
        parts = name.split("/")
        if FORBIDDEN_DIRS.intersection(parts[:-1]) or name.endswith(FORBIDDEN_SUFFIXES):
            problems.append(f"build output, run or model: {name}")
        if size > MAX_FILE_BYTES:
            problems.append(f"{name}: {size} bytes, over {MAX_FILE_BYTES}")
    total = sum(names.values())
    print(f"{path}: {root}, {len(names)} files, {total / 1e6:.2f} MB")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

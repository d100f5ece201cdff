"""The README's usage example must run as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_usage_example_runs(capsys):
    blocks = python_blocks()
    assert blocks, "README.md has no python example"
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "__readme__"})
    assert "spqindex.Index(ntotal=10000" in capsys.readouterr().out

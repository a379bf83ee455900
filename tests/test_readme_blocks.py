"""Every ```python block of README.md and of the user's guide (docs/guide.md) runs alone, as written, in a fresh
interpreter.

A reader copies one block, not the README top to bottom, so each block must bring its own imports and data
(``tests/test_readme.py`` runs them in order in one namespace, which hides a block leaning on an earlier one).
A block that cannot run alone (it needs a GPU, or torchrun) is marked in the README by the line
``<!-- not run: reason -->`` right before its fence; it is skipped with that reason. A block importing an optional
package that is not installed here is skipped too, as the rest of the suite does.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = (README, ROOT / "docs" / "guide.md")  # the pages whose examples a reader runs
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None  # the reason, when the README marks the block
    document: str = "README.md"


def readme_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```python":
            i += 1
            continue
        start = i
        end = next(j for j in range(start + 1, len(lines)) if lines[j].strip() == "```")
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.fullmatch(previous.strip())
        blocks.append(Block(start + 1, "\n".join(lines[start + 1 : end]) + "\n", marker and marker.group(1)))
        i = end + 1
    return blocks


BLOCKS = [
    Block(b.line, b.code, b.not_run, str(doc.relative_to(ROOT)))
    for doc in DOCUMENTS
    for b in readme_blocks(doc.read_text())
]


def _missing_imports(code: str) -> list[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_readme_has_python_blocks():
    assert len([b for b in BLOCKS if b.document == "README.md"]) >= 5
    assert len([b for b in BLOCKS if b.document == "docs/guide.md"]) >= 5
    assert all(b.not_run is None or b.not_run for b in BLOCKS), "a not-run marker needs its reason"


def test_not_run_marker_is_read():
    text = "x\n\n<!-- not run: needs a GPU -->\n```python\nimport torch\n```\n\n```python\npass\n```\n"
    assert [(b.line, b.not_run) for b in readme_blocks(text)] == [(4, "needs a GPU"), (8, None)]


@pytest.mark.slow  # a fresh interpreter per block: 4-16 s each on two busy cores, diffusers' import the most
@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.document}:{b.line}" for b in BLOCKS])
def test_readme_block_runs_alone(block: Block, tmp_path: Path):
    if block.not_run:
        pytest.skip(f"{block.document} line {block.line} is marked not run: {block.not_run}")
    missing = _missing_imports(block.code)
    if missing:
        pytest.skip(f"{block.document} line {block.line} needs {', '.join(missing)}, not installed here")
    script = tmp_path / f"readme_line{block.line}.py"
    script.write_text(block.code)
    # A temporary working directory: whatever a block writes lands there, and nothing of the checkout is on
    # sys.path but what the installed package provides.
    done = subprocess.run(
        [sys.executable, script.name], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (
        f"{block.document} python block at line {block.line} failed when run alone "
        f"(line k of the script is line {block.line} + k there):\n{done.stderr[-4000:]}"
    )

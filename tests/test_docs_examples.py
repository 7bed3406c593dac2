"""Every ```python block of README.md and docs/**/*.md runs, so no example can rot.

The blocks of one page run in order as one script (later blocks may use what earlier ones
defined, as a reader runs them), in a fresh process and an empty working directory, within
``BUDGET_S``. A block that must not run (shell commands, output, a fragment) takes another
fence: ```bash, ```text, or ```py for Python shown but not run. New pages are picked up
without any change here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
BUDGET_S = 120  # per page, on a busy 2-core machine; the examples take seconds

# An opening fence whose info string is exactly "python", its body, and the closing fence
# at the same indentation (blocks inside list items are indented).
BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown page: (line of the opening fence, dedented code)."""
    blocks = []
    for match in BLOCK.finditer(text):
        indent = len(match["indent"])
        lines = [line[indent:] for line in match["body"].splitlines()]
        blocks.append((text.count("\n", 0, match.start()) + 1, "\n".join(lines)))
    return blocks


def script_for(page: Path) -> str:
    """The page's blocks as one script, each headed by its line in the page."""
    parts = []
    for line, code in python_blocks(page.read_text()):
        parts.append(f"# {page.relative_to(ROOT)}, block at line {line}\n{code}\n")
    return "\n".join(parts)


PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page.read_text())]


def test_blocks_are_found_in_indented_and_plain_fences() -> None:
    text = "a\n```python\nx = 1\n```\n- item\n\n    ```python\n    y = 2\n    ```\n```py\nz\n```\n"
    assert python_blocks(text) == [(2, "x = 1"), (7, "y = 2")]
    assert ROOT / "README.md" in PAGES_WITH_CODE


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    script = tmp_path / "examples.py"
    script.write_text(script_for(page))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUDGET_S,
    )
    assert result.returncode == 0, f"{page.relative_to(ROOT)}:\n{result.stdout}\n{result.stderr}"

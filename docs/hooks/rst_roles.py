"""MkDocs hook: show the docstrings' Sphinx roles (:func:`x`, :class:`~a.B`) as code.

The docstrings are written for Sphinx as well; mkdocstrings renders a role as its literal
text. Here ``:func:`x``` becomes ``x`` in code, and ``~a.b.C`` shows ``C``, as in Sphinx.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj):<code>(~?)([^<]*)</code>")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return ROLE.sub(_code, html)

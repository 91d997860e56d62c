"""Passages as a reader's context: packed within a token budget, fenced and numbered for a prompt."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.chunk import count_tokens
from rag.types import Passage


def pack(passages: Sequence[Passage], budget_tokens: int) -> list[Passage]:
    """Passages in rank order while they fit the token budget (the first one always goes in)."""
    packed: list[Passage] = []
    used = 0
    for p in passages:
        cost = count_tokens(p.text) + 20  # + the fence around it
        if packed and used + cost > budget_tokens:
            break
        packed.append(p)
        used += cost
    return packed


_FENCE_TAG = re.compile(r"<(?=/?passage)", re.I)


def fenced(n: int, title: str, body: str) -> str:
    """Passage n fenced for a prompt: the fence tells the model where data starts and ends, so neither the text nor
    the title can close or open one ("</passage>" in the text is escaped, a quote in the title replaced)."""
    title = " ".join(title.split()).replace('"', "'")
    return f'<passage n="{n}" title="{_FENCE_TAG.sub("&lt;", title)}">\n{_FENCE_TAG.sub("&lt;", body)}\n</passage>'


def render_passages(passages: Sequence[Passage]) -> str:
    """Fenced, numbered passages."""
    return "\n\n".join(fenced(n, p.title, p.text) for n, p in enumerate(passages, start=1))

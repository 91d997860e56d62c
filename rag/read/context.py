"""Passages as a reader's context: packed within a token budget, fenced and numbered for a prompt."""

from __future__ import annotations

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


def render_passages(passages: Sequence[Passage]) -> str:
    """Fenced, numbered passages: the fence tells the model where data starts and ends."""
    blocks = []
    for n, p in enumerate(passages, start=1):
        text = p.text.replace("<passage", "&lt;passage").replace("</passage", "&lt;/passage")
        blocks.append(f'<passage n="{n}" title="{p.title}">\n{text}\n</passage>')
    return "\n\n".join(blocks)

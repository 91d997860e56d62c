"""The answer chain (LangChain runnables): retrieve -> number and pack passages -> backend -> verify citations.

Backends: `extractive` (offline, deterministic: picks the source sentences that answer the question) and `openai`
(a chat model behind any OpenAI-compatible server). Both produce text with [n] markers; the same verification
turns markers into checked citations, so the user never sees a citation the sources do not back."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda

from rag.chunk import as_prose, count_tokens, is_list_item, sentence_spans
from rag.cite import STOPWORDS, attach_marker, content_stems, content_words, stem, strip_foreign_links, verify
from rag.config import AnswerSettings, resolve_backend
from rag.embed import Embedder
from rag.ingest import is_utf8
from rag.prompts import load_prompt
from rag.retrieve import Retriever, document_texts
from rag.synonyms import noun_forms, noun_synonyms
from rag.types import Answer, Passage

CANNOT_ANSWER = "Not in the sources: the ingested articles do not answer this question."


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


# -- extractive backend ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    passage: int  # 1-based passage number
    text: str
    score: float
    vector: np.ndarray = field(repr=False, compare=False)
    lead: str = ""  # the sentence before, when it names whom "He" or "It" of this one is: shown and cited with it
    narrow: bool = False  # holds the narrow kind of answer asked for, beside every name the question names


_MONTH_NAMES = "january february march april may june july august september october november december".split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_CALENDAR_WORDS = tuple(_MONTH_NAMES + _WEEKDAYS)
_COLOURS = frozenset("red orange yellow green blue purple violet pink brown black white grey gray silver gold golden "
                     "beige crimson scarlet navy turquoise maroon cream ochre".split())
_NUMBER_WORDS = set("one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
                    "hundred hundreds thousand thousands million billion dozen dozens".split())
_TIME_WORD = re.compile(r"^(\d{4}|" + "|".join(_CALENDAR_WORDS) + ")$")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w-]+")
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")  # "US", "FSB": a name even where it opens the sentence
_TOKEN = re.compile(r"[\w$£€%-]+")  # "£48", "$10", "41%": a figure keeps its currency
_YEAR = r"(?:19|20)\d\d"  # 1900-2099: a year wherever it stands
_ISO_DATE = re.compile(rf"{_YEAR}(-\d\d){{0,2}}$")  # a year, or a date in ISO form
# Where the noun phrase after "which" / "how many" ends: an auxiliary, a preposition, or a verb in the past.
_PHRASE_END = frozenset("did do does was were is are has have had will would could can should may might to of in on "
                        "at for from by with into about that who which said took made led won went came held began "
                        "sent saw told gave hit put ran fought joined".split())
_MONEY = frozenset("money cash funds funding budget compensation damages fine fines salary wages pay payment payout "
                   "price revenue profit ransom bail".split())
# "How much did it cost", "how much is it worth": a verb that asks for money where no noun does
_PAYING = re.compile(r"\b(cost|costs|pay|pays|paid|spend|spends|spent|raise|raised|earn|earns|earned|worth|charge|"
                     r"charged|fined|sell|sold|buy|bought|owe|owed|donate|donated|invest|invested)\b")
# Nouns whose value is a count: "What is the population of Pinehollow?" is answered by a figure.
_COUNTED = frozenset("population capacity attendance membership headcount".split())
_CURRENCY_SIGNS = ("$", "£", "€")  # "£48", "$10": a figure that names its currency
_CURRENCY = frozenset("dollars euros pounds rubles roubles hryvnias yuan yen kroner krone kronor krona francs "
                      "rupees pesos zlotys lira lire shekels dinars dirhams rand baht $".split())
# "How did X describe Y": the answer is what a source called it.
_DESCRIBE_Q = re.compile(r"\b(describe|characteri[sz]e|call|label|define|portray|term)\b", re.I)
_DESCRIBED = re.compile(r"\b(call(ed|s|ing)?|describ(ed|es|ing)|defin(ed|es|ing)|characteri[sz](ed|es|ing)|"
                        r"label+(ed|s|ing)?|brand(ed|s|ing)|term(ed|s)|dub(bed|s)|portray(ed|s)|"
                        r"refer(red|s)? to|regard(ed|s)?)\b", re.I)


@dataclass(frozen=True)
class Asked:
    """What kind of string answers a question, and the noun it is about ("How many *drones*", "Which *city*"); for
    a yes/no question (kind "deed") the deed it asks about ("Did Russia *repel* them?"); for "What did *NATO* say"
    (kind "speech") the speaker."""

    kind: str | None  # number | measure | size | age | date | year | weekday | month | colour | name | place
    #                   | description | deed | speech | None
    focus: str | None = None


def answer_words(asked: Asked) -> list[str]:
    """The words that spell an answer of a closed kind: a weekday answers "which day of the week" whichever of
    the seven it is, so a passage that names one is likelier to answer."""
    spelt = {"weekday": _WEEKDAYS, "month": _MONTH_NAMES, "date": _CALENDAR_WORDS, "year": _CALENDAR_WORDS,
             "colour": sorted(_COLOURS)}
    return list(spelt.get(asked.kind or "", ()))  # a copy: callers may extend


def _head_noun(words: Sequence[str]) -> str | None:
    """The last word of the noun phrase that opens `words` ("attacking fighters did ..." -> "fighters")."""
    phrase: list[str] = []
    for w in words:
        if w in _PHRASE_END or (phrase and (w in ("a", "an", "the") or (w.endswith("ed") and len(w) > 4))):
            break
        if w not in ("a", "an", "the"):
            phrase.append(w)
    return phrase[-1] if phrase else None


def asked_noun(question: str) -> str | None:
    """The noun a "what" question asks for: "What is the *capacity* of ...", "What was X's annual *revenue*",
    "What *compensation* did ..."."""
    q = question.lower().strip()
    if m := re.match(r"what (?:is|was|are|were) (?:the )?([\w' -]+?) of\b", q):
        return _head_noun(m.group(1).split())
    if m := re.match(r"what (?:is|was|are|were) ([\w'’ -]+?)\W*$", q):
        return m.group(1).split()[-1]
    if m := re.match(r"what ([\w-]+) (?:did|does|do|has|have|had|will|would|was|were|is|are)\b", q):
        return m.group(1)
    return None


@lru_cache(maxsize=256)  # asked for again by every step that scores the question's candidate sentences
def analyse_question(question: str) -> Asked:
    """The expected answer type, read off the question's wording."""
    q = question.lower().strip()
    words = re.findall(r"[\w'-]+", q)
    if re.search(r"\bday of the week\b|\bwhat weekday\b|\b(which|what) weekday\b", q):
        return Asked("weekday")
    if re.search(r"\b(which|what|in what|in which) month\b", q):
        return Asked("month")
    if re.search(r"\b(which|what) colou?rs?\b", q):
        return Asked("colour")
    if re.match(r"((on|in) )?(when|what date|what day|which day|which year|what year)\b", q) or "what date" in q:
        return Asked("year" if re.search(r"\b(what|which) year\b", q) else "date")
    if re.search(r"\bhow old\b", q):
        return Asked("age")
    if m := re.search(r"\bhow (tall|high|deep|wide|far|heavy|long)\b", q):
        return Asked("measure", m.group(1))  # a figure in its unit: "46 metres (tall)", "forty years", "30 km"
    m = re.search(r"\bhow (many|much|large|big)\b", q)
    if m:
        head = _head_noun(words[words.index(m.group(1)) + 1:] if m.group(1) in words else [])
        if m.group(1) == "much" and head and head not in _MONEY:
            return Asked(None, head)  # "how much resistance": an amount in words, not a figure
        if m.group(1) == "much" and not head and _PAYING.search(q):
            return Asked("number", "money")  # "How much did the hospital cost?": a sum in its currency
        if m.group(1) in ("large", "big"):  # "how large an area" is answered in its unit ("square kilometers")
            if head in _LAND:
                return Asked("measure", "area")
            # "How large is the site?": a figure next to the thing measured, best an area ("a 3.5-hectare site"),
            # though a count may do ("a crowd of 6,140")
            sized = re.search(r"\bhow (large|big) (is|are|was|were|will)\b", q)
            return Asked("size", measured_thing(question)) if sized else Asked("number")
        return Asked("number", head)
    if re.search(r"\bwhat (number|amount|sum|size|percentage|share|turnout|losses|casualties|toll)\b|\bturnout\b", q):
        return Asked("number")
    # "What was Halvorsen Marine's annual revenue?", "What compensation did Russia offer?": a sum in its currency;
    # "What is the population of Pinehollow?": a figure
    noun = asked_noun(q)
    if noun in _MONEY:
        return Asked("number", "money")
    if noun in _COUNTED:
        return Asked("number", noun)
    if re.match(r"how (did|do|does|was|were|is|are)\b", q) and _DESCRIBE_Q.search(q):
        return Asked("description")
    if asks_who(q):
        # "Who is the governor of Belgorod": a name next to "governor", and Belgorod's, not Kursk's
        # "Who will become chairman?": a name next to "chairman"
        m = (re.match(r"who (is|was|are|were) (the |a |an )?([\w' -]+?) (of|for|at|in)\b", q)
             or re.match(r"who (will become|would become|becomes|became) (the |a |an )?([\w' -]+?)"
                         r"( (of|for|at|in)\b|\W*$)", q))
        return Asked("name", _head_noun(m.group(3).split()) if m else None)
    if re.match(r"(from |to )?where\b", q):
        return Asked("place")
    if re.match(r"what (?:is|was|are|were|will) .+ (?:be )?(?:called|named)\W*$", q):
        return Asked("name")  # "What will the merged school be called?"
    m = re.search(r"\bwhat is the name of (the |a )?([\w' -]+)", q)
    if m:
        return Asked("name", _head_noun(m.group(2).split()))
    # "What did they say their mission was", "what are the aims of ...": a description of the noun named
    if q.startswith("what") and (m := re.search(r"\b(their|its|his|her) ([\w-]+) (is|are|was|were)\b|"
                                                r"^what (is|are|was|were) the ([\w' -]+?) of\b", q)):
        return Asked(None, m.group(2) or noun)  # the noun of "what are the aims of ...", as asked_noun read it
    if m := _SPEECH_Q.match(question.strip()):
        return Asked("speech", m.group(1).lower())
    if deed := yes_no_deed(question):
        return Asked("deed", deed)
    m = re.search(r"\bwhich ([\w' -]+)", q)
    if m:
        return Asked("name", _head_noun(m.group(1).split()))
    return Asked(None)


_REPORTING = frozenset("say tell claim report state announce declare confirm mention think".split())
# "What did Putin say ...", "What did the Institute for the Study of War announce": words of a named speaker.
_NAME_WORD = r"[A-Z][\w'’-]*"
_SPEECH_Q = re.compile(r"(?i:what (?:did|does|do|has|have) (?:the )?)"
                       rf"({_NAME_WORD}(?: (?:of|for|the|{_NAME_WORD}))*?) (?:{'|'.join(_REPORTING)})\b")
# Verbs and nouns that report words, as stems: "claimed", "claims", "statement", "according to".
_SAYING = frozenset(stem(w) for w in "say said tell told write wrote claim state statement announce declare vow warn "
                    "insist accuse deny confirm report assess call describe label brand note argue suggest urge "
                    "promise threaten dismiss add comment respond reply post tweet quote according".split())
# "the militias", "any equipment": words before the subject's noun
_DETERMINERS = frozenset("the a an its their his her this that these those any some every each no".split())
_PRONOUNS = frozenset("it they he she anyone anybody someone".split())
_SPEAKER_PRONOUNS = ("he", "she", "they")


def yes_no_deed(question: str) -> str | None:
    """What "Did X do Y?" asks X did: the verb after the subject ("Did Ukraine *help* ...", "Did the militias
    *capture* ..."), or the deed it governs ("Did Russia succeed in *repelling* ..."). A sentence that answers
    speaks of that deed; one that only names X and the event does not."""
    tokens = re.findall(r"[\w'’-]+", question)
    if len(tokens) < 3 or tokens[0].lower() not in ("did", "does", "do"):
        return None
    i, has_determiner = 1, False
    if tokens[i].lower() in _DETERMINERS or tokens[i].endswith(("'s", "’s")):
        i, has_determiner = i + 1, True
    if tokens[i].lower() in _PRONOUNS:
        i += 1
    name_starts = i
    while i < len(tokens) and (tokens[i][0].isupper() or (tokens[i] == "of" and i + 1 < len(tokens)
                                                          and tokens[i + 1][0].isupper())):
        i += 1  # the subject's name: "Russia", "the Freedom of Russia Legion"
    named = i > name_starts and not _DEMONYM.match(tokens[i - 1])  # "the Russian army" is no name
    if has_determiner and not named:
        i += 1  # the subject's noun: "the militias", "the Russian army", "Ukraine's military"
    if i >= len(tokens) or not tokens[i].islower() or tokens[i] in _REPORTING:
        return None  # "Did Russia say the attackers were ...": what was said is the question, not the saying
    governed = tokens[i + 2] if i + 2 < len(tokens) and tokens[i + 1] in ("in", "at", "to") else ""
    if governed.islower() and governed not in STOPWORDS:
        return governed  # "succeed in repelling", "try to enter"; not "travel to the border"
    return tokens[i]


def _word_prefixes(text: str) -> frozenset[str]:
    """Word stems of a text, hyphenated words also by their parts ("US-made" names "US"). Five letters, not the
    six of content-word stems: a name must match across "Russia" / "Russian" / "Russia's"."""
    words = re.findall(r"[\w-]+", text.lower())
    return frozenset({w[:5] for w in words} | {part[:5] for w in words if "-" in w for part in w.split("-") if part})


_stems = lru_cache(maxsize=256)(_word_prefixes)  # a question's, asked of every sentence; articles are not cached


# A wire story's first words: "Glenmarra, Monday 17 March 2025 - ".
_DATELINE = re.compile(rf"[A-Z][\w .'’-]*, (?:{'|'.join(w.title() for w in _WEEKDAYS)}),? \d{{1,2}} [A-Z][a-z]+ \d{{4}}"
                       r"\s+[-–—]\s+")
# How an age is written: "Mr George Lyle, 67,", "aged 67", "a 67-year-old", "67 years old".
_AGE = re.compile(r"([A-Z][\w'’-]+), \d{1,3},|\baged \d{1,3}\b|\b\d{1,3}-years?-old\b|\b\d{1,3} years old\b")


def has_answer_of_type(asked: Asked, sentence: str, question: str) -> bool:
    """Does the sentence hold a candidate answer of the asked kind that the question does not already contain?
    When the sentence names the focus noun, the answer must stand next to it: "26 drones", "the city of Belgorod";
    "seven regions" with no region named does not answer "which seven regions"."""
    if asked.kind in (None, "description", "deed"):
        return True
    known = _stems(question)
    tokens = _TOKEN.findall(sentence)
    low = [t.lower() for t in tokens]
    if asked.kind == "speech":
        return _gives_words_to(asked.focus or "", low)
    if asked.kind == "age":  # "Mr George Lyle, 67," is Lyle's age, no answer to "How old is Mrs Anna Ross?"
        names = _question_names(question)
        return any(not (names and m.group(1)) or m.group(1)[:5].lower() in names for m in _AGE.finditer(sentence))
    if asked.kind in ("weekday", "month", "year", "date", "name") and (line := _DATELINE.match(sentence)):
        # "Glenmarra, Monday 17 March 2025 - A landslide has blocked ...": the day and place of the report, not of
        # the event
        return has_answer_of_type(asked, sentence[line.end():], question)
    if asked.kind == "weekday":
        return any(t in _WEEKDAYS for t in low)
    if asked.kind == "month":
        return any(t in _MONTH_NAMES and t[:5] not in known for t in low)
    if asked.kind == "colour":
        return any(t in _COLOURS and t[:5] not in known for t in low)
    if asked.kind in ("year", "date"):
        # "the first strike since 2019" looks back: it says when the last one was, never when the next "will" be
        # or when the one that "does start" starts
        ahead = re.search(r"\b(will|shall|does|do|is|are)\b", question, re.I)
        since = {i for i in range(1, len(low)) if low[i - 1] == "since"} if ahead else set()
        if asked.kind == "year":  # "On March 12" does not say which year
            return any((_ISO_DATE.match(t) or _is_year(low, i)) and t[:4] not in known and i not in since
                       for i, t in enumerate(low))
        # "on Monday", "in 2023", "March 12", "2024-03-12"; not "100 fighters"
        return any((t in _CALENDAR_WORDS or _in_date(low, i) or _ISO_DATE.match(t)) and t[:5] not in known
                   and i not in since for i, t in enumerate(low))
    if asked.kind in ("number", "measure", "size"):
        fits = [i for i, t in enumerate(low) if _is_figure(t) and t not in known and not _in_date(low, i)]
        if asked.kind == "number" and asked.focus and asked.focus not in _MONEY:
            fits = [i for i in fits if not _is_sum(low, i)]  # "how many people" is no sum: "5,000 dollars"
        if asked.kind == "measure":
            measure = asked.focus or "long"
            other = _OTHER_DIMENSIONS.get(measure, frozenset())  # "22 metres tall" is no length
            return any(_UNITS_OF[measure] & spot and not other & spot for spot in (_unit_spot(low, i) for i in fits))
    else:
        starts = {m.start() for m in _name_matches(sentence)}
        offsets = [m.start() for m in _TOKEN.finditer(sentence)]
        names, thing_asked = _question_names(question), asked.focus not in _NATION_WORDS
        fits = [i for i, (t, at) in enumerate(zip(low, offsets, strict=True))
                if at in starts and t[:5] not in known and t not in _CALENDAR_WORDS
                and not _describes(tokens, i, names, thing_asked)]
        if asked.kind == "place":  # "near the village of Terebreno", "in Belgorod": not "Moscow's claims"
            fits = [i for i in fits if _LOCATIVE & set(low[max(0, i - 4):i])]
    if not fits:
        return False
    near = _focus_positions(asked, low)
    if asked.kind == "number" and asked.focus and not near and asked.focus not in _ANYONE:
        return False  # "how many soldiers" is not answered by "100 fighters"; "how many people" by "a crowd of 6,140"
    if near and _owned_by_another(asked, question, tokens, near):
        return False
    # distance in content words: "a separate group identifying itself as the Russian Volunteer Corps" is close
    return not near or _close(low, near, fits)


def _close(low_tokens: Sequence[str], these: Sequence[int], those: Sequence[int], reach: int = 3) -> bool:
    """Does a token at one of `these` positions stand within `reach` content words of one at `those`?"""
    place = list(accumulate(t not in STOPWORDS for t in low_tokens))
    return any(abs(place[i] - place[j]) <= reach for i in these for j in those)


def _gives_words_to(speaker: str, low_tokens: Sequence[str]) -> bool:
    """A word of the speaker's name within three content words of a verb of saying: "NATO said", "according to
    the Kremlin", "the Legion's statement". A sentence that only names the speaker ("defiance against Putin's
    government") does not say what the speaker said."""
    names = {w[:5] for w in speaker.split() if w not in STOPWORDS}

    def owns_another_thing(i: int) -> bool:  # "Putin's government": the name owns a thing that is no saying
        after = low_tokens[i + 1:i + 3]
        return len(after) == 2 and after[0] == "s" and stem(after[1]) not in _SAYING

    named = [i for i, t in enumerate(low_tokens) if t[:5] in names and not owns_another_thing(i)]
    if named:  # "he" after the name stands for it: 'Mr Tom Brennan apologised. "We let Liam down," he said'
        named += [i for i, t in enumerate(low_tokens) if t in _SPEAKER_PRONOUNS and i > named[0]]
    saying = [i for i, t in enumerate(low_tokens) if stem(t) in _SAYING]
    return _close(low_tokens, named, saying)


_ANYONE = frozenset("people persons individuals".split())
_LOCATIVE = frozenset("in near at into inside outside across from over to towards toward around".split())
_DEMONYM = re.compile(r"[A-Z][a-z]+(ian|ican|ean|ese|ish)$")
# What a nationality answers: "Which country backed the militias?" - "Ukrainian-backed"; None stands for "who".
_NATION_WORDS = frozenset({None, "country", "countries", "nation", "nations", "nationality", "side", "sides"})


def _name_matches(text: str) -> list[re.Match[str]]:
    """Capitalised words not opening a sentence, and acronyms anywhere ("FSB", "US")."""
    return [*_CAPITALISED.finditer(text), *_ACRONYM.finditer(text)]


@lru_cache(maxsize=256)
def _question_names(question: str) -> frozenset[str]:
    """What the question spells as names ("Belgorod", "FSB"), as the five-letter stems names are matched by."""
    return frozenset(m.group()[:5].lower() for m in _name_matches(question))


_HONORIFICS = frozenset("mr mrs ms miss dr prof sir dame".split())


@lru_cache(maxsize=256)
def _named_things(question: str) -> tuple[str, ...]:
    """The question's names that name someone or something: months, weekdays and titles ("Mrs") name no one."""
    return tuple(dict.fromkeys(m.group() for m in _name_matches(question) if _names_someone(m.group())))


def _names_someone(word: str) -> bool:
    return word.lower() not in _CALENDAR_WORDS and word.lower() not in _HONORIFICS


def unmentioned(question: str, article: str) -> list[str]:
    """Names in the question that the article never uses, in any case or form: an article that never mentions
    Dunmouth does not tell how many homes were flooded in Dunmouth, however alike its sentences are. Names match
    by their first five letters, as elsewhere ("Ukraine", "Ukrainian")."""
    used = _word_prefixes(article)
    return [n for n in _named_things(question) if n[:5].lower() not in used]


@lru_cache(maxsize=256)  # a question's, asked of every candidate sentence
def _name_runs(question: str) -> tuple[tuple[str, ...], ...]:
    """The question's names, each as the five-letter stems of its words: "the Harbourlight Museum" is one name."""
    runs: list[list[re.Match[str]]] = []
    for m in sorted(_name_matches(question), key=lambda m: m.start()):
        if not _names_someone(m.group()):
            continue
        if runs and m.start() == runs[-1][-1].end() + 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    return tuple(tuple(m.group()[:5].lower() for m in run) for run in runs)


def named_in(question: str, sentence: str) -> bool:
    """Does the sentence name everything the question names? A name of several words is named by its last word
    too: "the museum" is the Harbourlight Museum, but "the yard" is not the Harlow Crossing."""
    used = _word_prefixes(sentence)
    return all(set(run) <= used or (len(run) > 1 and run[-1] in used) for run in _name_runs(question))


_ABOUT = re.compile(r"\b([\w'’-]+) about (.+?)\W*$", re.I)


def untold(question: str, article: str) -> list[str]:
    """The words of what the question asks a speaker about that the article never uses: an article on a wildfire
    that never speaks of rail does not tell "What did Rebecca Hale say about the rail strike?", however often it
    quotes her."""
    m = _ABOUT.search(question)
    if not m or analyse_question(question).kind != "speech" or stem(m.group(1).lower()) not in _SAYING:
        return []  # "Who is the spokesman quoted about the raid?" asks for a name, which the article may give
    used = {stem(w) for w in content_words(article)}  # not content_stems: its cache would keep whole articles
    # dates name the event, which the article may date otherwise ("on 12 March")
    return [w for w in content_words(m.group(2)) if not _TIME_WORD.match(w) and stem(w) not in used]


def _describes(tokens: Sequence[str], i: int, names: frozenset[str], thing_asked: bool) -> bool:
    """The capitalised token i names no new thing: the tail of a name the question gave ("Belgorod Oblast" when
    the question says "Belgorod"; but "Belgorod Governor Gladkov" names Gladkov: "governor" is no name in "the
    governor of Belgorod"). When a kind of thing is asked ("which groups", "the name of the village"), neither
    does a nationality before a noun ("the Ukrainian border") or a name made adjective ("Ukrainian-backed
    militias"); to "who" or "which country" they may well answer ("Ukrainian forces")."""
    token = tokens[i]
    if thing_asked and "-" in token and token.rsplit("-", 1)[1].islower():
        return True
    if thing_asked and _DEMONYM.match(token) and i + 1 < len(tokens) and tokens[i + 1][0].islower():
        return True
    return i > 0 and tokens[i - 1][0].isupper() and tokens[i - 1][:5].lower() in names


def _names_at(tokens: Sequence[str], spots: Iterable[int]) -> set[str]:
    return {tokens[j][:5].lower() for j in spots
            if 0 <= j < len(tokens) and tokens[j][0].isupper() and content_words(tokens[j])}


@lru_cache(maxsize=256)
def _question_owners(asked: Asked, question: str) -> frozenset[str]:
    """Names the question ties its noun to with "of": "the governor of the Belgorod region". A name before the
    noun is left out: in "Which Russian regions" it says what kind of region, not whose."""
    tokens = _TOKEN.findall(question)
    return frozenset(_owners_in(tokens, _focus_positions(asked, [t.lower() for t in tokens])))


def _owners_in(tokens: Sequence[str], at: Sequence[int]) -> set[str]:
    """Names tied by "of" to the noun at each of `at` ("the mayor of Castlemere")."""
    return _names_at(tokens, [j for i in at if i + 1 < len(tokens) and tokens[i + 1] == "of" for j in (i + 2, i + 3)])


def asks_who(question: str) -> bool:
    """Does the question ask for a person ("Who is the mayor of ...")?"""
    return bool(re.match(r"\W*(who|whom|whose)\b", question, re.I))


def _owned_by_another(asked: Asked, question: str, tokens: Sequence[str], near: Sequence[int]) -> bool:
    """The question ties its noun to a name ("the governor of the Belgorod region") and the sentence (its
    `tokens`) puts another name before it ("Kursk Governor Roman Starovoyt"): another governor, so no answer.
    When "who" asks for the person in a role, a name after "of" is another owner too ("mayor of Castlemere");
    after "which villages" it names the villages asked for ("the villages of Kozinka")."""
    owners = _question_owners(asked, question)
    theirs = _names_at(tokens, [i - 1 for i in near])
    if asks_who(question):
        theirs |= _owners_in(tokens, near)
    return bool(owners and theirs) and not owners & theirs


def _places(tokens: Sequence[str]) -> dict[str, set[str]]:
    """The names each preposition of place brings ("evacuated from Pinehollow and Ashby Cross": from ->
    {"pineh", "ashby"}), as five-letter stems."""
    placed: dict[str, set[str]] = {}
    for i, t in enumerate(tokens):
        if t.lower() in _LOCATIVE and (names := _names_at(tokens, range(i + 1, i + 4))):
            placed.setdefault(t.lower(), set()).update(names)
    return placed


def placed_elsewhere(question: str, sentence: str) -> bool:
    """The question places what it asks about by a name ("evacuated from Marston") and the sentence places it, by
    the same word, only at other names ("evacuated from Pinehollow and Ashby Cross"): it tells of another place."""
    tokens = _TOKEN.findall(sentence)
    theirs, named = _places(tokens), _word_prefixes(sentence)
    return any(prep in theirs and not names & named for prep, names in _places(_TOKEN.findall(question)).items())


def _in_date(low_tokens: Sequence[str], i: int) -> bool:
    """A year, or a day next to its month ("23 May", "May 23"): a date, not a quantity."""
    if _is_year(low_tokens, i):
        return True
    return any(0 <= j < len(low_tokens) and low_tokens[j] in _MONTH_NAMES for j in (i - 1, i + 1))


_YEAR_LEAD = frozenset("in since until till by from of circa around before after during".split())


def _is_year(low_tokens: Sequence[str], i: int) -> bool:
    """1900-2099 is a year wherever it stands. An older one only after a preposition and before no noun: "built in
    1858" is a year, "in 1500 soldiers" a count."""
    token = low_tokens[i]
    if re.fullmatch(_YEAR, token):
        return True
    after = low_tokens[i + 1] if i + 1 < len(low_tokens) else ""
    return (bool(re.fullmatch(r"1[0-8]\d\d", token)) and i > 0 and low_tokens[i - 1] in _YEAR_LEAD
            and (not after or after in STOPWORDS))


def _is_figure(token: str) -> bool:
    """A quantity in digits or words: "26", "46-metre", "hundreds"."""
    return any(ch.isdigit() for ch in token) or token.split("-")[0] in _NUMBER_WORDS


def _is_sum(low_tokens: Sequence[str], i: int) -> bool:
    """Is the figure at `i` a sum of money: "£48", "$10", "5,000 dollars", "412 million euros"?"""
    if low_tokens[i].startswith(_CURRENCY_SIGNS):
        return True
    unit = next((t for t in low_tokens[i + 1:i + 4] if not _is_figure(t) and t not in _SCALES), "")
    return unit in _CURRENCY


_LENGTHS = frozenset("""metres meters metre meter m km kilometres kilometers kilometre kilometer cm centimetres
centimeters mm feet foot ft inches inch miles mile yards yard""".split())
_STOREYS = frozenset("storeys stories floors".split())  # a height only: "five storeys" says nothing of a length
_DURATIONS = frozenset("""seconds second minutes minute hours hour days day weeks week months month years year
decades decade centuries century""".split())
_AREAS = frozenset("square sq km2 km² hectares hectare acres acre".split())
_LAND = frozenset("area areas territory territories land region zone site space".split())
_WEIGHTS = frozenset("kg kilograms kilogram kilos grams gram tonnes tonne tons ton pounds lb lbs".split())
# The units that answer "how tall", "how long", ...: "How wide is the bridge?" is not answered by "four years".
_UNITS_OF = {"tall": _LENGTHS | _STOREYS, "high": _LENGTHS | _STOREYS, "deep": _LENGTHS, "wide": _LENGTHS,
             "far": _LENGTHS, "long": _LENGTHS | _DURATIONS, "heavy": _WEIGHTS, "area": _AREAS}
_DIMENSIONS = {"tall": "height", "high": "height", "deep": "depth", "wide": "width", "long": "length"}
# A figure that says which dimension it measures ("600 metres long and 1.2 metres high") answers only that one; a
# distance ("1.5 kilometres away", "18 kilometres downstream", "22 kilometres to the south") only how far.
_DISTANCE = frozenset("away distant downstream upstream offshore inland north south east west".split())
# "60,000 cubic metres of silt", "400 square metres": a volume or an area, no length, height or distance
_NO_LENGTH = frozenset("square cubic sq".split())
_OTHER_DIMENSIONS = {a: frozenset(w for w, d in _DIMENSIONS.items() if d != dim) | _DISTANCE | _NO_LENGTH
                     for a, dim in _DIMENSIONS.items()} | {"far": _NO_LENGTH}


def _unit_spot(low_tokens: Sequence[str], i: int) -> set[str]:
    """The words where a figure's unit stands: in the token ("46-metre") or just after ("46 metres", "hundreds of
    square kilometers"). A time from another ("four years after construction began") is a point, not a length."""
    spot = {*low_tokens[i].split("-")[1:], *low_tokens[i + 1:i + 4]}
    return set() if spot & _RELATIVE_TIME and spot & _DURATIONS else spot


_RELATIVE_TIME = frozenset("after before ago later earlier since".split())


def _focus_positions(asked: Asked, low_tokens: Sequence[str]) -> list[int]:
    if asked.focus in _MONEY:  # "how much money": the figure names its currency instead
        return [i for i, t in enumerate(low_tokens) if t in _CURRENCY or t.startswith(_CURRENCY_SIGNS)]
    if not asked.focus:
        return []
    focus, root = asked.focus[:5], stem(asked.focus)

    def is_focus(token: str) -> bool:  # "drones"; after a figure's hyphen, "3.5-hectare" and "48-hour" too
        head, *joined = token.split("-")
        return head[:5] == focus or any(p[:5] == focus or stem(p) == root for p in joined)

    return [i for i, t in enumerate(low_tokens) if is_focus(t)]


_MEASURED = re.compile(r"\bhow \w+ (?:is|are|was|were) (?:the |a |an )?([\w' -]+)", re.I)


@lru_cache(maxsize=256)
def measured_thing(question: str) -> str | None:
    """Of a measure question, the common noun whose size is asked ("How tall is the floating crane that lifted
    it?" -> "crane"); None for a name ("How long is the Harlow Crossing?"): the article may well call it "the
    bridge"."""
    m = _MEASURED.search(question)
    head = _head_noun(m.group(1).split()) if m else None
    return head.lower() if head and head.islower() else None


def names_focus(asked: Asked, sentence: str) -> bool:
    """The sentence names the noun the question is about ("the *villages* of Kozinka", "six *tanks*")."""
    return bool(_focus_positions(asked, [t.lower() for t in _TOKEN.findall(sentence)]))


# Words that shape a question rather than name what it is about ("how many", "what kind", "which day").
_QUESTION_FORM = frozenset("many much kind type sort name names date day week weekday month year colour color "
                           "happen happened take took place part according reportedly describe".split())


def question_terms(question: str) -> list[str]:
    """Content words of the question; dates and years drop out unless the question asks for a date, since they
    name the event rather than what is asked about it."""
    sizes = set(re.findall(r"\bhow (large|big)\b", question.lower()))  # no article states a size in these words
    words = [w for w in content_words(question) if w not in _QUESTION_FORM and w not in sizes]
    if analyse_question(question).kind in ("date", "year", "weekday", "month"):
        return words
    return [w for w in words if not _TIME_WORD.match(w)] or words


def relation_terms(question: str) -> set[str]:
    """Stems of the question's lower-case content words: what is asked about the names it mentions. For "how
    many" the counted noun is left out: "26 drones shot down" does not say how many drones were launched."""
    lower = {w for w in re.findall(r"[A-Za-z0-9]+", question) if not w[0].isupper()}  # as content_words splits
    asked = analyse_question(question)
    terms = [t for t in question_terms(question) if not (asked.kind == "number" and t == asked.focus)]
    relation = {stem(t) for t in terms if t in lower}
    if not relation and asked.kind in ("number", "size"):
        return {stem(t) for t in terms}  # "how many fighters does X have": a count of X's, so X must be named
    return relation


def sharpened_idf(idf: Callable[[str], float], sentences: Iterable[str]) -> Callable[[str], float]:
    """The corpus idf times the word's idf among the sentences that compete to answer: the words that name the
    event ("paramilitary groups", "attacks") recur in most of them and say little about which one answers, the
    word that names what is asked ("their mission") sets one apart."""
    stems = [content_stems(s) for s in set(sentences)]
    n = len(stems)

    @lru_cache(maxsize=64)
    def weight(term: str) -> float:
        df = sum(stem(term) in have for have in stems)
        return idf(term) * math.log(1 + (n - df + 0.5) / (df + 0.5))

    return weight


_PARTICLES = ("out", "in", "down", "up", "off", "over", "back")


@lru_cache(maxsize=4096)
def sentence_stems(text: str) -> frozenset[str]:
    """The text's content stems, and a verb with its particle as one word: "would walk out" speaks of the walkout,
    "shut down" of a shutdown, "turn out" of the turnout."""
    words = re.findall(r"[a-z]+", text.lower())
    joined = {stem(a + b) for a, b in zip(words, words[1:], strict=False) if b in _PARTICLES and len(a) > 2}
    return content_stems(text) | joined


def weighted_overlap(terms: Sequence[str], sentence: str, idf: Callable[[str], float],
                     alike: Mapping[str, frozenset[str]] | None = None) -> float:
    """Share of the question's word weight (idf: rare words weigh more) that the sentence contains, by stem or
    as one of the word's synonyms in `alike` ("help" -> "assistance")."""
    if not terms:
        return 0.0
    have = sentence_stems(sentence)
    alike = alike or {}

    def contains(term: str) -> bool:
        return stem(term) in have or bool(alike.get(term) and alike[term] & noun_forms(sentence))

    total = sum(idf(t) for t in terms)
    return sum(idf(t) for t in terms if contains(t)) / total if total else 0.0


_TITLE_LOWER = frozenset("with from into over after about than that this upon onto amid".split())
_CAPTION_LABEL = re.compile(r"^\W*(\d{1,2} \w+ \d{2,4}|\w+ \d{1,2},? \d{2,4}|[A-Z0-9 ]{3,})\s*:")


def is_statement(sentence: str) -> bool:
    """Headlines and captions are not answers. A statement ends like a sentence (a list item need not), is not in
    Title Case ("Russian Paramilitary Groups Cross Border") and does not open with a caption's label ("23 May 23:
    ..."). A headline in sentence case is a long line with no full stop: "Anti-Kremlin Russians fighting for
    Ukraine stage 'extraordinary' attack inside Russian border region"."""
    if _CAPTION_LABEL.match(sentence):
        return False
    long_words = [w for w in re.findall(r"[A-Za-z][\w'’-]*", sentence) if len(w) > 3 and w.lower() not in _TITLE_LOWER]
    if len(long_words) >= 5 and all(w[0].isupper() for w in long_words):
        return False
    return sentence.rstrip()[-1:] in '.!?"”’\'' or is_list_item(sentence)  # "- 26 drones shot down" states a fact


# Weights of the extractive score, chosen on evals/gold/seeds.jsonl (see `rag eval`).
W_DENSE, W_TYPE, W_EXTRA = 0.5, 1.0, 1.0
# A sentence with no answer of the asked kind is not an answer; one whose answer stands next to the asked noun
# ("the villages of Kozinka") or that reports a description ("called them ...") is the likeliest answer.
W_TYPED, W_ANCHORED, W_UNTYPED = 0.05, 0.15, -1.0
# The article's date fits the year the question names (+) or names another year (-): another event, most likely.
# An undated article yields a little to one dated in that year: the dated one surely tells of the asked event.
W_EVENT_FIT, W_EVENT_MISFIT, W_EVENT_UNDATED = 0.1, 0.3, 0.05
# Kinds of answer so narrow that a sentence holding one beside the question's names is likely the answer, however
# few words it shares with the question: a weekday ("crossed into Belgorod on Monday" for "On which day of the
# week did the Belgorod incursion start?"), a figure in the asked unit ("hundreds of square kilometers").
_NARROW_KINDS = frozenset({"weekday", "measure"})


def _years(text: str) -> set[str]:
    return set(re.findall(rf"\b{_YEAR}\b", text))


_RELATIVE_YEAR = re.compile(r"\b(last|this|next) year\b", re.I)
_YEAR_STEP = {"last": -1, "this": 0, "next": 1}


def sentence_event_weight(question: str, sentence: str, article_date: str | None = None) -> float:
    """A sentence that dates itself in years the question does not name tells of another event ("re-elected on
    5 May 2023" does not answer "How many votes did she win in 2019?"): no answer, however alike its words; "last
    year" in an article of 2025 is 2024. So does one that names the question's numbered thing without its number
    ("Kestrel was launched in July" for "When will Kestrel 2 launch?")."""
    asked, told = _years(question), _years(sentence)
    if article_date and article_date[:4].isdigit():
        told |= {str(int(article_date[:4]) + _YEAR_STEP[m.lower()]) for m in _RELATIVE_YEAR.findall(sentence)}
    if asked and told and not asked & told:
        return W_UNTYPED
    another = any(_names_another(name, number, sentence) for name, number in _numbered_names(question))
    return W_UNTYPED if another else 0.0


_NUMBERED = re.compile(r"\b([A-Z][\w-]*) (\d+[A-Za-z]?)\b")  # "Kestrel 2", "Highway 9", "Apollo 11"


@lru_cache(maxsize=256)
def _numbered_names(question: str) -> tuple[tuple[str, str], ...]:
    """Names with a number that is part of them; not a date ("May 2023") nor a word before a year ("In 2024")."""
    return tuple((name, number) for name, number in _NUMBERED.findall(question) if not re.fullmatch(_YEAR, number)
                 and name.lower() not in _CALENDAR_WORDS and name.lower() not in STOPWORDS)


def _names_another(name: str, number: str, sentence: str) -> bool:
    """Does the sentence name `name` only without `number` ("Kestrel", "Kestrel 1"), never as "Kestrel 2"?"""
    return bool(re.search(rf"\b{re.escape(name)}\b(?![\s-]{number}\b)", sentence)
                and not re.search(rf"\b{re.escape(name)}[\s-]{number}\b", sentence))


def event_weights(question: str, passages: Sequence[Passage]) -> list[float]:
    """Per passage, how its article's date fits the year the question names: 'the May 2023 incursion' should not
    be answered from a 2024 article, and an undated article yields a little to one dated in 2023. Zero when the
    question names no year."""
    years = _years(question)
    if not years:
        return [0.0] * len(passages)
    fits = [p.date[:4] in years if p.date else None for p in passages]
    undated = -W_EVENT_UNDATED if any(fits) else 0.0
    return [undated if fit is None else W_EVENT_FIT if fit else -W_EVENT_MISFIT for fit in fits]


_OPENS_WITH_PRONOUN = re.compile(r"\W*(It|Its|They|Their|He|His|She|Her)\b")
_PRONOUN_SPEAKER = re.compile(rf"[\"”]\s+({'|'.join(_SPEAKER_PRONOUNS)})\b")  # '"We built a bridge," he said'


def points_back(sentence: str) -> bool:
    """Does the sentence speak of someone or something only the sentence before names ("It stands 46 metres
    tall", '"...," he said')?"""
    return bool(_OPENS_WITH_PRONOUN.match(sentence) or _PRONOUN_SPEAKER.search(sentence))


def score_sentences(question: str, q_vec: np.ndarray, passages: Sequence[Passage], embedder: Embedder,
                    idf: Callable[[str], float], max_candidates: int = 16, synonym_senses: int = 0
                    ) -> list[Candidate]:
    """Source sentences of the passages, scored by meaning (cosine), rare shared words (or their synonyms in
    the words' `synonym_senses` commonest senses), answer type and event. Only the `max_candidates` most
    promising by words and rank are embedded: embedding is the expensive step."""
    terms = question_terms(question)
    alike = {t: noun_synonyms(t, synonym_senses) for t in terms}
    term_stems = {stem(t) for t in terms}
    asked = analyse_question(question)
    relation = relation_terms(question)
    # (passage number, event fit, sentence, its content words, the sentence its pronoun points back to, the
    # paragraph before it when it points back)
    sentences: dict[tuple[str, int], tuple[int, float, str, list[str], str, str]] = {}  # chunks overlap
    for n, (p, fit) in enumerate(zip(passages, event_weights(question, passages), strict=True), start=1):
        before, paragraph, end = "", "", 0
        for s, e in sentence_spans(p.text):
            sentence, words = p.text[s:e], content_words(p.text[s:e])
            if "\n\n" in p.text[end:s]:
                paragraph = ""
            if len(words) >= 3 and is_statement(sentence) and (p.doc, p.start + s) not in sentences:
                back = points_back(sentence)
                sentences[(p.doc, p.start + s)] = (n, fit, sentence, words, before if back else "",
                                                   paragraph if back else "")
            before, paragraph, end = sentence, f"{paragraph} {sentence}", e
    weigh = sharpened_idf(idf, [t[2] for t in sentences.values()])
    pool = []
    for n, article_fit, sentence, words, refers_to, paragraph in sentences.values():
        fit = article_fit + sentence_event_weight(question, sentence, passages[n - 1].date)
        in_context = f"{refers_to} {sentence}"  # "It stands 46 metres tall" tells of what the sentence before names
        lexical = weighted_overlap(terms, in_context, weigh, alike)
        # "It is 22 metres tall" after "The new hospital ... The building, which ...": the hospital's height
        typed = type_weight(asked, relation, question, sentence, paragraph)
        lead = ""
        # "Who drew it?" - "He drew ..." after a name; "What did Okafor say?" - '"...," he said' after Okafor
        if refers_to and typed == W_UNTYPED and asked.kind in ("name", "speech"):
            joined = type_weight(asked, relation, question, in_context)
            typed, lead = (joined, refers_to) if joined > typed else (typed, "")
        # An answer adds something to the question: a sentence made only of the question's words does not.
        novelty = sum(stem(w) not in term_stems for w in words) / len(words)
        # Sentences that cannot hold the asked kind of answer come last: embedding is spent on those that can.
        prior = 0.5 * lexical + W_TYPE * typed + fit + 0.1 * novelty + 0.05 / n
        narrow = asked.kind in _NARROW_KINDS and typed > 0 and named_in(question, sentence)
        pool.append((prior, lexical, n, sentence, fit + 0.05 * novelty, typed, lead, narrow))
    ranked = sorted(pool, key=lambda t: -t[0])[:max_candidates]
    if not ranked:
        return []
    vectors = embed_cached(embedder, [t[3] for t in ranked])
    out = []
    for (_, lexical, n, text, extra, typed, lead, narrow), v in zip(ranked, vectors, strict=True):
        score = W_DENSE * float(v @ q_vec) + (1 - W_DENSE) * lexical + W_TYPE * typed + W_EXTRA * extra + 0.01 / n
        out.append(Candidate(n, text, score, v, lead, narrow))
    return sorted(out, key=lambda c: -c.score)


def type_weight(asked: Asked, relation: set[str], question: str, text: str, context: str = "") -> float:
    """How well the sentence fits the kind of answer asked for: holds one next to the asked noun (W_ANCHORED),
    holds one (W_TYPED), or cannot answer (W_UNTYPED). `context` is the paragraph before it when it opens with
    "It" or "They", where what the pronoun stands for is named."""
    if asked.kind == "description":
        return W_ANCHORED if _DESCRIBED.search(text) else -W_ANCHORED  # reports no description
    if asked.kind == "deed":  # "Did Russia succeed in repelling ...": one silent on repelling says neither yes nor no
        return W_ANCHORED - W_TYPED if names_focus(asked, text) else W_TYPED - W_ANCHORED
    if asked.kind and not has_answer_of_type(asked, text, question):
        return W_UNTYPED
    thing = measured_thing(question) if asked.kind in ("measure", "size") else None
    if thing and stem(thing) not in content_stems(f"{context} {text}"):
        return W_UNTYPED  # "How tall is the crane?" - "Its pylon stands 96 metres tall" measures another thing
    if asked.kind in ("name", "place", "number", "size") and relation and not relation & sentence_stems(text):
        return W_UNTYPED  # names, but none that does what was asked ("Who commands X" vs "X works with Y")
    if asked.kind in ("number", "measure", "size") and placed_elsewhere(question, text):
        return W_UNTYPED  # "How many were evacuated from Marston?" - "3,000 evacuated from Pinehollow"
    # "Who is the chief executive of Westgrid?": the fire chief's sentence has a chief, no executive. ("Which
    # newspaper ..." is answered by a paper's name without the word.)
    role = stem(asked.focus) if asked.kind == "name" and asked.focus and asks_who(question) else None
    if role in relation and role not in content_stems(text):
        return W_UNTYPED
    if asked.kind == "size":  # "How large is the site?" - "a 3.5-hectare site" more than "its 640 staff"
        return W_ANCHORED if has_answer_of_type(Asked("measure", "area"), text, question) else W_TYPED
    if asked.kind:
        return W_ANCHORED if names_focus(asked, text) else W_TYPED
    # "what did they say their mission was": the sentence that names the mission
    return W_ANCHORED - W_TYPED if asked.focus and names_focus(asked, text) else 0.0


_SENTENCE_VECTORS: dict[tuple[str, str], np.ndarray] = {}


def embed_cached(embedder: Embedder, texts: list[str]) -> list[np.ndarray]:
    """Sentence vectors, remembered per process: follow-up questions mostly meet the same passages."""
    missing = [t for t in dict.fromkeys(texts) if (embedder.name, t) not in _SENTENCE_VECTORS]
    if missing:
        if len(_SENTENCE_VECTORS) > 50_000:
            _SENTENCE_VECTORS.clear()
        for t, v in zip(missing, embedder.embed_documents(missing), strict=False):
            _SENTENCE_VECTORS[(embedder.name, t)] = v
    return [_SENTENCE_VECTORS[(embedder.name, t)] for t in texts]


def select_sentences(candidates: Sequence[Candidate], max_sentences: int, min_relevance: float,
                     margin: float = 0.05, redundancy: float = 0.8, min_narrow: float | None = None) -> list[Candidate]:
    """The best sentence, plus the next ones that are nearly as relevant and say something new. A best sentence
    that holds the narrow kind of answer asked for (`Candidate.narrow`) needs only `min_narrow`."""
    if not candidates:
        return []
    bar = min_narrow if min_narrow is not None and candidates[0].narrow else min_relevance
    if candidates[0].score < bar:
        return []
    chosen = [candidates[0]]
    for c in candidates[1:]:
        if len(chosen) >= max_sentences or c.score < candidates[0].score - margin:
            break
        if all(float(c.vector @ o.vector) < redundancy for o in chosen):
            chosen.append(c)
    return chosen


_UNIT_LEADS = frozenset("per square cubic".split())  # "41 per cent", "300 square metres": a unit of two words
_SCALES = frozenset("thousand million billion trillion m bn k".split())
_FIGURE_TOKEN = re.compile(r"[£$€]|\d(?:[\d,]*\d)?(?:\.\d+)?|[A-Za-z]+")  # "£", "180,000", "3.5", "hectare"


def stated_figures(sentence: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(unit, figure, the words about it) for each figure in digits with a unit: "The bridge is 412 metres long"
    -> ("metres", "412", ("bridge", "long")); "at a cost of £52 million" -> ("£ million", "52", ("cost",));
    "a 3.5-hectare site" -> ("hectare", "3.5", ("site",)). Dates are no figures."""
    low = [t.lower() for t in _FIGURE_TOKEN.findall(sentence)]
    out = []
    for i, t in enumerate(low):
        if not t[0].isdigit() or _in_date(low, i):
            continue
        if i > 0 and low[i - 1] in "£$€":
            width = 1 + (i + 1 < len(low) and low[i + 1] in _SCALES)
            unit, before = " ".join([low[i - 1], *low[i + 1:i + width]]), low[max(0, i - 4):i - 1]
        elif i + 1 < len(low) and low[i + 1].isalpha() and low[i + 1] not in STOPWORDS:
            width = 1 + (low[i + 1] in _UNIT_LEADS and i + 2 < len(low))
            unit, before = " ".join(low[i + 1:i + 1 + width]), low[max(0, i - 3):i]
        else:
            continue  # "in 28 days" has a unit; "£35,000 in costs" its currency; "the 12th" none
        after = low[i + width:i + width + 1] if unit[0] in "£$€" else low[i + 1 + width:i + 2 + width]
        out.append((unit, t, tuple(w for w in before + after if w.isalpha() and w not in STOPWORDS)))
    return out


def figures_by_unit(sentence: str) -> dict[str, frozenset[str]]:
    """The sentence's figures by the word after them: {"metres": {"412"}}, {"million": {"48", "30"}}."""
    found: dict[str, set[str]] = {}
    for unit, figure, _ in stated_figures(sentence):
        found.setdefault(unit, set()).add(figure)
    return {unit: frozenset(values) for unit, values in found.items()}


def differing_figures(chosen: Sequence[Candidate], candidates: Sequence[Candidate], passages: Sequence[Passage],
                      min_relevance: float) -> list[Candidate]:
    """Answers from other articles that would pass on their own and give another figure in the same unit ("430
    metres long" beside "412 metres long"): where the sources disagree, the reader sees both."""
    docs = {passages[c.passage - 1].doc for c in chosen}
    given = figures_by_unit(chosen[0].text)
    out: list[Candidate] = []
    for c in candidates:
        if c.score < min_relevance:
            break
        theirs = figures_by_unit(c.text)
        doc = passages[c.passage - 1].doc
        if doc not in docs and any(theirs[u] != given[u] for u in theirs.keys() & given.keys()):
            out.append(c)
            docs.add(doc)
    return out


_SECOND_ASK = re.compile(r",? and (how|what|which|who|whom|when|where|why)\b", re.I)


_OPENING_QUOTES = "\"“"


def _opens_quote(text: str) -> bool:
    """Does the text leave a quotation open ('"It is not just gold.' before 'It is the story ...," she said')?"""
    curly = text.count("“") > text.count("”")
    return curly or text.count('"') % 2 == 1


def quoted_words_after(text: str, sentence: str, speaker: str, most: int = 3) -> list[str]:
    """The quoted sentences that follow `sentence` in its paragraph of `text` and go on giving the speaker's
    words: 'Helen Okafor said the company was disappointed.' is followed by '"Our proposals ...," she said.' and
    '"The strike will hurt the passengers."'. They stop at the first sentence that is no quotation, at one given
    to another name, at the paragraph's end, or after `most`."""
    at = text.find(sentence)
    if at < 0:
        return []
    after: list[str] = []
    inside, end = _opens_quote(sentence), at + len(sentence)
    for s, e in sentence_spans(text):
        if s < end:
            continue
        line = text[s:e]
        outside = re.sub(r"\"[^\"]*\"|“[^”]*”|[\"“].*$", " ", line)  # the words around the quotation
        others = {m.group()[:5].lower() for m in _name_matches(outside)} - {w[:5] for w in speaker.split()}
        quoted = inside or line[:1] in _OPENING_QUOTES
        if "\n\n" in text[end:s] or len(after) >= most or not quoted or others:
            break
        after.append(line)
        inside, end = _opens_quote(line) != inside, e
    return after


def question_parts(question: str) -> list[str]:
    """A question that asks two things ("what did they launch and how many were downed?") as its two asks, each
    answered on its own; any other question as itself."""
    m = _SECOND_ASK.search(question)
    if not m:
        return [question]
    parts = [question[:m.start()].rstrip(" ,") + "?", question[m.start(1):]]
    # "Who said it and when?": a bare "when" means nothing alone, so the question stays whole
    return parts if all(question_terms(p) for p in parts) else [question]


def extractive_answer(question: str, q_vec: np.ndarray, passages: Sequence[Passage], embedder: Embedder,
                      idf: Callable[[str], float], settings: AnswerSettings,
                      articles: Mapping[str, str] | None = None) -> str:
    """The best sentences of the passages, cited; `articles` (document id -> its whole text) drops the sentences
    of articles that never mention a name the question asks about."""
    parts = question_parts(question)
    per_part = settings.max_sentences if len(parts) == 1 else 1  # a two-part question: the best for each ask
    chosen: list[Candidate] = []
    for part in parts:
        vector = q_vec if part == question else embedder.embed_query(part)
        scored = score_sentences(part, vector, passages, embedder, idf, synonym_senses=settings.synonym_senses)
        if articles:
            elsewhere = {doc for doc, text in articles.items() if unmentioned(part, text) or untold(part, text)}
            scored = [c for c in scored if passages[c.passage - 1].doc not in elsewhere]
        best = select_sentences(scored, per_part, settings.min_relevance, settings.margin,
                                min_narrow=settings.min_relevance_narrow)
        if best and analyse_question(part).kind in ("number", "measure", "size"):
            best += differing_figures(best, scored, passages, settings.min_relevance)
        chosen += [c for c in best if c.text not in {o.text for o in chosen}]  # the same sentence only once
    if not chosen:
        return CANNOT_ANSWER
    said = analyse_question(question)
    follow = {c.text: quoted_words_after(passages[c.passage - 1].text, c.text, said.focus or "") for c in chosen
              if said.kind == "speech" and has_answer_of_type(said, c.text, question)}  # 'X said ...' "..."
    shown = dict.fromkeys((text, c.passage) for c in chosen
                          for text in (c.lead, c.text, *follow.get(c.text, ())) if text)  # once each
    return " ".join(attach_marker(as_prose(text), f"[{n}]") for text, n in shown)


# -- the chain ------------------------------------------------------------------------------------------
class AnswerChain:
    """Holds the loaded retriever and model, so every question after the first is fast."""

    def __init__(self, retriever: Retriever, settings: AnswerSettings, backend: str | None = None,
                 model: Any = None) -> None:
        self.retriever = retriever
        self.settings = settings
        self.backend = resolve_backend(backend or settings.backend, os.environ)
        self.prompt = load_prompt("answer")
        self._model = model  # a LangChain chat model; built from settings on first use when None
        self.cache: Any = None  # rag.llm.ResponseCache for recorded / replayed model replies

    @property
    def model(self) -> Any:
        if self._model is None:
            from rag.llm import openai_chat_model

            self._model = openai_chat_model(self.settings)
        return self._model

    def retrieve(self, question: str, k: int | None = None, docs: Sequence[str] | None = None
                 ) -> tuple[np.ndarray, list[Passage]]:
        q_vec = self.retriever.embedder.embed_query(question)
        found = self.retriever.search(question, k=k, docs=docs, query_vector=q_vec,
                                      answer_words=answer_words(analyse_question(question)))
        return q_vec, pack(found, self.settings.context_tokens)

    def messages(self, question: str, passages: Sequence[Passage]) -> list[Any]:
        system, user = self.prompt.render(question=question, passages=render_passages(passages),
                                          cannot_answer=CANNOT_ANSWER, max_sentences=str(self.settings.max_sentences))
        return [SystemMessage(system), HumanMessage(user)]

    def generate(self, question: str, q_vec: np.ndarray, passages: Sequence[Passage],
                 on_token: Callable[[str], None] | None = None) -> str:
        if self.backend == "extractive":
            # whole articles are read from the store only when the question names something they must mention (a
            # speaker asked about a topic, whose words they must use, is such a name)
            articles = (document_texts(self.retriever, sorted({p.doc for p in passages}), passages)
                        if _named_things(question) else None)
            return extractive_answer(question, q_vec, passages, self.retriever.embedder,
                                     self.retriever.lexical.idf, self.settings, articles)
        messages = self.messages(question, passages)
        key = self.cache.key(self.settings.openai_model, messages) if self.cache else ""
        if self.cache and (hit := self.cache.get(key)) is not None:
            return str(hit)
        llm = self.model | StrOutputParser()
        if on_token is None:
            reply = str(llm.invoke(messages))
        else:
            parts = []
            for token in llm.stream(messages):
                parts.append(token)
                on_token(token)
            reply = "".join(parts)
        if self.cache:
            self.cache.put(key, reply)
        return reply

    def finalize(self, question: str, raw: str, passages: Sequence[Passage], timings: dict[str, float]) -> Answer:
        raw = strip_foreign_links(raw, list(passages))
        if CANNOT_ANSWER.lower().rstrip(".") in raw.lower() or not passages:
            return Answer(question, CANNOT_ANSWER, True, (), tuple(passages), self.backend, timings)
        checked = verify(raw, list(passages), drop_unsupported=self.settings.unsupported == "drop")
        if not checked.citations:  # nothing the sources back: say so rather than show unverifiable text
            return Answer(question, CANNOT_ANSWER, True, (), tuple(passages), self.backend, timings,
                          unsupported=checked.unsupported, dropped_markers=checked.dropped_markers)
        return Answer(question, checked.text, False, checked.citations, tuple(passages), self.backend, timings,
                      unsupported=checked.unsupported, dropped_markers=checked.dropped_markers)

    def ask(self, question: str, k: int | None = None, docs: Sequence[str] | None = None,
            on_token: Callable[[str], None] | None = None) -> Answer:
        if not is_utf8(question):  # bytes from a terminal in another encoding: no model or tokenizer takes them
            raise ValueError("the question holds bytes that are not UTF-8 text: check the terminal's encoding")
        t0 = time.perf_counter()
        q_vec, passages = self.retrieve(question, k, docs)
        t1 = time.perf_counter()
        raw = self.generate(question, q_vec, passages, on_token)
        t2 = time.perf_counter()
        timings = {"retrieve": (t1 - t0) * 1000, "generate": (t2 - t1) * 1000}
        answer = self.finalize(question, raw, passages, timings)
        timings["verify"] = (time.perf_counter() - t2) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        return answer

    def as_runnable(self) -> Runnable:
        """The chain as one LangChain runnable: {"question": ...} -> Answer."""

        def run(inputs: dict[str, Any]) -> Answer:
            return self.ask(inputs["question"], inputs.get("k"), inputs.get("docs"))

        return RunnableLambda(run)

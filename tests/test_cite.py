"""rag.cite as pure functions: marker parsing, verification against the passages shown, renumbering, links."""

from __future__ import annotations

import pytest

from rag.cite import Claim, attach_marker, parse_claims, strip_foreign_links, verify
from rag.testing import markers_in, passages_from_text
from rag.types import Passage

# A small article; its chunks are the passages, so citations can be checked against the full source text.
SOURCE = (
    "Russia Faces Alleged Counter-Invasion\n\n"
    "Ukrainian-backed militias have allegedly launched multiple attacks on Russian border regions. "
    "On March 12, the groups claimed to have launched incursions into Russia with armored vehicles and tanks. "
    "They reportedly crossed into the Belgorod and Kursk regions.\n\n"
    "Kursk Governor Roman Starovoyt told reporters there was a battle in his region that led to a shootout. "
    "Because of the attack, schools in Kursk switched to online classes to keep students safe.\n\n"
    "The Russian Defense Ministry announced it shot down 26 drones over seven regions. "
    "Some of the Ukrainian drones were able to make it deep inside Russia before being destroyed."
)
OTHER = (
    "Russian authorities say they have spent about 10 billion rubles to strengthen the defenses of the "
    "Belgorod region. The Kremlin called the fighters a sabotage and reconnaissance group."
)


def make_passages(size: int = 60) -> tuple[list[Passage], dict[str, str]]:
    """Passages from two documents (small chunks, so there are several), plus each document's text."""
    passages = passages_from_text("004.txt", SOURCE, "Counter-Invasion", size=size, overlap=10)
    passages += passages_from_text("002.txt", OTHER, "Speed Reads", size=size, overlap=10)
    return passages, {"004.txt": SOURCE, "002.txt": OTHER}


def number_of(passages: list[Passage], needle: str) -> int:
    """1-based number of the first passage containing `needle`."""
    return next(i for i, p in enumerate(passages, start=1) if needle in p.text)


# -- parse_claims -----------------------------------------------------------------------------------------
def test_parse_valid_markers_per_sentence() -> None:
    claims, dropped = parse_claims("The ministry shot down 26 drones [2]. Schools moved online [1].", 3)
    assert claims == [Claim("The ministry shot down 26 drones.", (2,)), Claim("Schools moved online.", (1,))]
    assert dropped == []


@pytest.mark.parametrize("marker", ["[0]", "[99]", "[4]"])
def test_parse_out_of_range_marker_is_dropped_and_removed(marker: str) -> None:
    claims, dropped = parse_claims(f"The ministry shot down 26 drones {marker}.", 3)
    assert claims == [Claim("The ministry shot down 26 drones.", ())]
    assert dropped == [marker]


def test_parse_out_of_range_next_to_valid_keeps_the_valid_one() -> None:
    claims, dropped = parse_claims("Drones were shot down [2][7].", 3)
    assert claims == [Claim("Drones were shot down.", (2,))]
    assert dropped == ["[7]"]


def test_parse_repeated_marker_counts_once() -> None:
    claims, dropped = parse_claims("Drones were shot down [1][1]. Again [1] and [1].", 2)
    assert claims[0] == Claim("Drones were shot down.", (1,))
    assert claims[1].markers == (1,)
    assert dropped == []


@pytest.mark.parametrize("text", ["Drones fell [1, 2].", "Drones fell [1,2].", "Drones fell [1; 2].",
                                  "Drones fell [1][2]."])
def test_parse_grouped_markers(text: str) -> None:
    claims, dropped = parse_claims(text, 3)
    assert claims == [Claim("Drones fell.", (1, 2))]
    assert dropped == []


def test_parse_grouped_with_one_out_of_range() -> None:
    claims, dropped = parse_claims("Drones fell [1, 9].", 3)
    assert claims == [Claim("Drones fell.", (1,))]
    assert dropped == ["[9]"]


@pytest.mark.parametrize("marker", ["[source 2]", "[Source 2]", "[passage 1]", "[doc 3]"])
def test_parse_named_marker_is_malformed_dropped_and_removed(marker: str) -> None:
    claims, dropped = parse_claims(f"Drones fell {marker}. Schools closed [1].", 3)
    assert claims[0] == Claim("Drones fell.", ())  # never silently turned into a citation, never shown
    assert marker in dropped
    assert claims[1] == Claim("Schools closed.", (1,))


def test_parse_bracketed_words_are_text_not_markers() -> None:
    # Sources quote with editorial brackets ("[and]"): they are text, neither citation nor dropped marker.
    claims, dropped = parse_claims("It destroyed six tanks, [and] 20 vehicles [abc].", 3)
    assert claims == [Claim("It destroyed six tanks, [and] 20 vehicles [abc].", ())]
    assert dropped == []


def test_parse_unclosed_marker_is_no_citation() -> None:
    claims, dropped = parse_claims("Drones fell [1. Schools closed [2].", 3)
    assert [c.markers for c in claims] == [(), (2,)]
    assert 1 not in claims[0].markers


@pytest.mark.parametrize("text", ["Drones fell. [1] Schools closed. [2]", "Drones fell. [1]\nSchools closed. [2]",
                                  "Drones fell.  [1]  Schools closed.  [2]"])
def test_parse_marker_after_full_stop_belongs_to_the_sentence_before(text: str) -> None:
    claims, dropped = parse_claims(text, 3)
    assert claims == [Claim("Drones fell.", (1,)), Claim("Schools closed.", (2,))]
    assert dropped == []


def test_parse_leading_marker_of_the_first_sentence_is_its_own() -> None:
    claims, _ = parse_claims("[1] Drones fell.", 3)
    assert claims == [Claim("Drones fell.", (1,))]


def test_parse_sentence_without_marker() -> None:
    claims, dropped = parse_claims("Drones fell [1]. Nobody knows why.", 2)
    assert claims == [Claim("Drones fell.", (1,)), Claim("Nobody knows why.", ())]
    assert dropped == []


def test_attach_marker_goes_before_closing_punctuation() -> None:
    assert attach_marker("It fell.", "[2]") == "It fell [2]."
    assert attach_marker("It fell", "[1]") == "It fell [1]"
    assert attach_marker("(It fell.)", "[1]") == "(It fell [1].)"
    assert attach_marker("He conceded after 2 a.m.", "[1]") == "He conceded after 2 a.m. [1]"  # the dot is the a.m.'s


def test_attach_marker_leaves_a_closing_quotation_whole() -> None:
    assert attach_marker('He said "it fell."', "[1][3]") == 'He said "it fell." [1][3]'
    assert attach_marker("It destroyed “six tanks.”", "[2]") == "It destroyed “six tanks.” [2]"
    # the marker after the quotation still belongs to the sentence before it
    answer = attach_marker('He said "it fell."', "[1]") + " " + attach_marker("Then it rose.", "[2]")
    claims, _ = parse_claims(answer, 2)
    assert claims == [Claim('He said "it fell."', (1,)), Claim("Then it rose.", (2,))]


# -- verify -------------------------------------------------------------------------------------------------
def test_citation_is_narrowed_to_the_supporting_sentence_with_absolute_offsets() -> None:
    passages, sources = make_passages()
    n = number_of(passages, "26 drones")
    p = passages[n - 1]
    assert p.start > 0 and len(p.text) > len("The Russian Defense Ministry announced it shot down 26 drones.")
    out = verify(f"The Defense Ministry said it shot down 26 drones over seven regions [{n}].", passages)
    assert len(out.citations) == 1
    c = out.citations[0]
    assert c.quote == "The Russian Defense Ministry announced it shot down 26 drones over seven regions."
    assert c.quote != p.text  # the sentence, not the whole chunk
    assert (c.doc, c.chunk_id, c.title) == ("004.txt", p.chunk_id, "Counter-Invasion")
    assert c.start == p.start + p.text.index(c.quote) and c.end == c.start + len(c.quote)
    assert sources[c.doc][c.start:c.end] == c.quote
    assert out.text == "The Defense Ministry said it shot down 26 drones over seven regions [1]."
    assert out.unsupported == () and out.dropped_markers == ()


def test_every_citation_resolves_into_its_source() -> None:
    passages, sources = make_passages()
    a, b, c = number_of(passages, "26 drones"), number_of(passages, "Starovoyt"), number_of(passages, "10 billion")
    answer = (f"The ministry shot down 26 drones over seven regions [{a}]. Governor Roman Starovoyt reported a "
              f"battle and a shootout [{b}]. Russia spent about 10 billion rubles on Belgorod defenses [{c}].")
    out = verify(answer, passages)
    assert len(out.citations) == 3
    for cit in out.citations:
        assert sources[cit.doc][cit.start:cit.end] == cit.quote
        p = next(p for p in passages if p.chunk_id == cit.chunk_id)
        assert p.start <= cit.start < cit.end <= p.end
    assert {c.doc for c in out.citations} == {"004.txt", "002.txt"}


def test_marker_naming_a_passage_that_does_not_support_the_sentence_is_dropped_and_flagged() -> None:
    passages, _ = make_passages()
    wrong = number_of(passages, "10 billion")  # exists, but says nothing about drones
    out = verify(f"The ministry shot down 26 drones over seven regions [{wrong}].", passages)
    assert out.citations == ()
    assert out.dropped_markers == (f"[{wrong}]",)
    assert out.unsupported == ("The ministry shot down 26 drones over seven regions.",)
    assert out.text == "The ministry shot down 26 drones over seven regions."  # flagged, shown without marker
    assert markers_in(out.text) == []


def test_unsupported_marker_dropped_but_supporting_one_kept() -> None:
    passages, _ = make_passages()
    right, wrong = number_of(passages, "26 drones"), number_of(passages, "10 billion")
    out = verify(f"The ministry shot down 26 drones over seven regions [{wrong}][{right}].", passages)
    assert [c.quote for c in out.citations] == [
        "The Russian Defense Ministry announced it shot down 26 drones over seven regions."]
    assert out.dropped_markers == (f"[{wrong}]",)
    assert out.unsupported == ()
    assert out.text.endswith("[1].")


def test_drop_unsupported_removes_the_sentence() -> None:
    passages, _ = make_passages()
    n = number_of(passages, "26 drones")
    answer = f"The ministry shot down 26 drones over seven regions [{n}]. Bananas grow on tall trees [{n}]. Rain fell."
    flagged = verify(answer, passages)
    assert flagged.unsupported == ("Bananas grow on tall trees.", "Rain fell.")
    assert "Bananas grow on tall trees." in flagged.text and "Rain fell." in flagged.text
    dropped = verify(answer, passages, drop_unsupported=True)
    assert dropped.unsupported == ("Bananas grow on tall trees.", "Rain fell.")
    assert dropped.text == "The ministry shot down 26 drones over seven regions [1]."
    assert "Bananas" not in dropped.text and "Rain" not in dropped.text


def test_invented_markers_never_survive_verification() -> None:
    passages, _ = make_passages()
    n = len(passages)
    a = number_of(passages, "26 drones")
    answer = (f"The ministry shot down 26 drones over seven regions [{a}][{n + 1}]. Schools closed [0]. "
              f"Governor Starovoyt spoke [source 2]. It was costly [{n + 40}].")
    out = verify(answer, passages)
    assert set(out.dropped_markers) >= {f"[{n + 1}]", "[0]", "[source 2]", f"[{n + 40}]"}
    assert markers_in(out.text) == [1]
    assert "source 2" not in out.text
    assert len(out.citations) == 1


def test_renumbering_follows_first_use_and_reuses_numbers() -> None:
    passages, sources = make_passages()
    drones, money, gov = (number_of(passages, "26 drones"), number_of(passages, "10 billion"),
                          number_of(passages, "Starovoyt"))
    answer = (f"Russia spent about 10 billion rubles on the Belgorod defenses [{money}]. "
              f"The ministry shot down 26 drones over seven regions [{drones}]. "
              f"The 10 billion rubles went to strengthen the Belgorod region defenses [{money}]. "
              f"Governor Roman Starovoyt told reporters about a battle and a shootout [{gov}][{money}].")
    out = verify(answer, passages)
    assert [c.n for c in out.citations] == [1, 2, 3]
    assert [c.doc for c in out.citations] == ["002.txt", "004.txt", "004.txt"]
    assert "10 billion rubles" in out.citations[0].quote
    assert "26 drones" in out.citations[1].quote
    assert "Starovoyt" in out.citations[2].quote
    assert markers_in(out.text) == [1, 2, 1, 3]  # the same sentence cited twice keeps its number
    assert out.dropped_markers == (f"[{money}]",)  # the money passage does not support the governor's sentence
    for c in out.citations:
        assert sources[c.doc][c.start:c.end] == c.quote


def test_numbers_in_text_are_in_range_and_dense() -> None:
    passages, _ = make_passages()
    answer = " ".join(f"Claim about drones shot down over seven regions [{i}]." for i in range(len(passages), 0, -1))
    out = verify(answer, passages)
    used = markers_in(out.text)
    assert used and set(used) == set(range(1, len(out.citations) + 1))


def test_verify_empty_answer() -> None:
    passages, _ = make_passages()
    out = verify("", passages)
    assert out.text == "" and out.citations == () and out.unsupported == () and out.dropped_markers == ()


# -- strip_foreign_links --------------------------------------------------------------------------------------
LINKED = Passage("l.txt#1", "l.txt", 0, 80, "Read the report at https://example.org/report.html for details.", "L")


def test_strip_foreign_links_removes_links_and_images_not_in_passages() -> None:
    text = ("See [the story](http://evil.example/x) and ![pic](https://evil.example/p.png) "
            "or visit http://evil.example now.")
    out = strip_foreign_links(text, [LINKED])
    assert "evil.example" not in out
    assert "![" not in out and "](" not in out
    assert out.startswith("See ") and out.endswith(" now.")


def test_strip_foreign_links_keeps_links_the_passages_contain() -> None:
    text = "The full report is at https://example.org/report.html and [here](https://example.org/report.html)."
    assert strip_foreign_links(text, [LINKED]) == text


def test_strip_foreign_links_mixed() -> None:
    text = "Report: https://example.org/report.html and also http://evil.example/pwn here."
    out = strip_foreign_links(text, [LINKED])
    assert "https://example.org/report.html" in out
    assert "evil.example" not in out


def test_strip_foreign_links_leaves_plain_text_and_markers_alone() -> None:
    text = "The ministry shot down 26 drones [1]. Schools closed [2]."
    assert strip_foreign_links(text, [LINKED]) == text

"""rag.ingest: loaders (txt, md, html, pdf), titles, dates, and bad input that becomes a Skip with a reason."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest

from rag.chunk import as_prose, sentence_spans
from rag.ingest import SUPPORTED, BadFile, Skip, find_date, guess_title, load_file, normalise, scan

MB = 1_000_000
CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def make_pdf(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF whose content stream draws `lines` in Helvetica (byte-exact xref)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL", *[f"({esc(line)}) Tj T*" for line in lines], "ET"]
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def load(path: Path, max_bytes: int = MB) -> object:
    return load_file(path, path.name, max_bytes)


# -- HTML: visible text only -----------------------------------------------------------------------------------

HIDDEN_HTML = """<!DOCTYPE html>
<html><head>
  <title>The  Real
  Title</title>
  <style>.x { color: red } /* STYLE_CANARY */</style>
  <script>var SCRIPT_CANARY = 1;</script>
  <meta name="description" content="META_CANARY">
</head>
<body>
<!-- COMMENT_CANARY -->
<h1>Heading One</h1>
<p>Visible paragraph one.</p>
<p hidden>HIDDENATTR_CANARY</p>
<div aria-hidden="true">ARIA_CANARY</div>
<div aria-hidden="false">Shown although it has aria-hidden false.</div>
<span style="display: none">DISPLAYNONE_CANARY</span>
<span style="color:red; VISIBILITY : Hidden">VISIBILITY_CANARY</span>
<div style="display:none"><p>NESTED_CANARY <b hidden>DOUBLY_CANARY</b></p><p>NESTED2_CANARY</p></div>
<noscript>NOSCRIPT_CANARY</noscript>
<template><p>TEMPLATE_CANARY</p></template>
<input type="hidden" value="INPUT_CANARY">
<p>Visible <b>bold</b> end.<script>SCRIPT2_CANARY()</script><style>p{}/*STYLE2_CANARY*/</style></p>
<ul><li>Item one</li><li>Item two</li></ul>
</body></html>
"""


def test_html_keeps_visible_text_and_drops_everything_hidden(tmp_path: Path) -> None:
    f = tmp_path / "page.html"
    f.write_text(HIDDEN_HTML, encoding="utf-8")
    doc = load(f)
    assert "CANARY" not in doc.text, doc.text
    assert doc.text.splitlines()[0] == "Heading One"
    for visible in ["Visible paragraph one.", "Shown although it has aria-hidden false.", "Visible bold end.",
                    "Item one", "Item two"]:
        assert visible in doc.text
    # Block elements become paragraphs; inline ones stay inside their line.
    assert "Visible paragraph one.\n\n" in doc.text
    assert doc.title == "The Real Title"
    assert "The Real Title" not in doc.text, "the <title> is metadata, not body text"


@pytest.mark.parametrize("hidden", [
    '<p hidden>CANARY</p>',
    '<p hidden="hidden">CANARY</p>',
    '<section aria-hidden="TRUE"><p>CANARY</p></section>',
    '<div style="display:none">CANARY</div>',
    '<div style="margin:0;display :  none !important">CANARY</div>',
    '<div style="visibility:hidden">CANARY</div>',
    '<script type="application/ld+json">{"x": "CANARY"}</script>',
    '<style>/* CANARY */</style>',
    '<!-- CANARY -->',
    '<noscript>CANARY</noscript>',
    '<svg><text>CANARY</text></svg>',
])
def test_each_kind_of_hidden_html_is_dropped(tmp_path: Path, hidden: str) -> None:
    f = tmp_path / "p.htm"
    f.write_text(f"<html><body><p>Before.</p>{hidden}<p>After.</p></body></html>", encoding="utf-8")
    doc = load(f)
    assert "CANARY" not in doc.text
    assert doc.text == "Before.\n\nAfter."


def test_html_entities_and_whitespace_are_normalised(tmp_path: Path) -> None:
    f = tmp_path / "e.html"
    f.write_text("<p>Caf&eacute;   &amp;\n   bar&nbsp;&mdash; ok</p>\n\n\n\n<p>Next</p>", encoding="utf-8")
    doc = load(f)
    assert doc.text == "Café & bar — ok\n\nNext"


# -- txt / md: normalisation and titles ------------------------------------------------------------------------


def test_text_is_normalised_and_hashed(tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    # BOM, CRLF, trailing spaces, many blank lines, decomposed é (e + combining acute).
    f.write_bytes("\ufeffTitle line  \r\n\r\n\r\n\r\nCafe\u0301 opens.\r\nEnd.\t \n\n".encode())
    doc = load(f)
    assert doc.text == "Title line\n\nCafé opens.\nEnd."
    assert doc.id == "n.txt" and doc.source == str(f)
    assert doc.title == "Title line"
    assert doc.content_hash == hashlib.sha256(doc.text.encode()).hexdigest()
    assert normalise(doc.text) == doc.text


def test_same_text_same_hash_different_text_different_hash(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Same words.\n")
    (tmp_path / "b.txt").write_text("Same words.\r\n\r\n")
    (tmp_path / "c.txt").write_text("Other words.\n")
    a, b, c = (load(tmp_path / n) for n in ["a.txt", "b.txt", "c.txt"])
    assert a.content_hash == b.content_hash != c.content_hash


@pytest.mark.parametrize("name, content, title", [
    # HTML: <title>, else the first <h1>, else the first line.
    ("a.html", "<html><body><p>Intro text.</p><h1>Main  Heading</h1><p>Body.</p></body></html>", "Main Heading"),
    ("b.html", "<html><body><p>First line here.</p><p>Body.</p></body></html>", "First line here."),
    # Markdown: the first ATX heading (closing hashes dropped), else the first line.
    ("post.md", "Some preamble line\n\n## The  Heading ##\n\nBody text.\n", "The  Heading"),
    ("plain.md", "No heading at all\n\nBody.\n", "No heading at all"),
    # Plain text: the first line, even when it starts with a hash.
    ("t.txt", "\n\n  First real line  \n# not a heading in a .txt\n", "First real line"),
    # ... and a hard-wrapped first line with the lines it wraps into
    ("w.txt", "Anti-Kremlin Russians fighting for Ukraine stage an attack\ninside a Russian border region\n\nBody.\n",
     "Anti-Kremlin Russians fighting for Ukraine stage an attack inside a Russian border region"),
])
def test_title(tmp_path: Path, name: str, content: str, title: str) -> None:
    f = tmp_path / name
    f.write_text(content)
    assert load(f).title == title


def test_long_first_line_title_is_cut_at_a_word() -> None:
    title = guess_title("word " * 100)
    assert title.endswith("…") and len(title) <= 121
    assert title[:-1].split() == ["word"] * len(title[:-1].split())


@pytest.mark.parametrize(("name", "title", "date"), [
    ("003_aa75b43cd0448e09.txt", None, "2023-05-23"),
    ("004_d30e4aad0120d6ab.txt", "Russia Faces Alleged Counter-Invasion", None),  # "On March 12" is in the body
    ("002_02ef5c51c639ed40.txt", "Speed Reads", None),
])
def test_seed_article_metadata(name: str, title: str | None, date: str | None) -> None:
    doc = load_file(CORPUS / name, name, 20 * MB)
    if title is not None:
        assert doc.title == title
    assert doc.date == date


# -- dates -----------------------------------------------------------------------------------------------------


HASTINGS = """Battle of Hastings

The Battle of Hastings was fought on 14 October 1066 between the Norman-French army of William, the Duke of
Normandy, and an English army under the Anglo-Saxon King Harold Godwinson.

On 25 September 1066 Harold defeated the Norwegians at Stamford Bridge.
"""
NORMANS = """The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in
France. They took part in the Third Crusade: on 1 May 1191 their fleet reached Cyprus."""


@pytest.mark.parametrize(("text", "expected"), [
    # a dateline: the date in the lines before the body, or in the lede's opening words before a dash or colon
    ("23 May 23: Fighters of the Legion operating inside Russia.", "2023-05-23"),
    ("Museum theft\n\nPort Ellery, Thursday 5 September 2024 - Thieves broke into the museum in the early hours "
     "and escaped with a gold astrolabe.", "2024-09-05"),
    ("# Results\n\n**Manchester, 6 February 2025.** The group today reports results for the third quarter of its "
     "financial year, the three months ended 31 December 2024.", "2025-02-06"),
    ("NEWS IN BRIEF\nSaturday 26 October 2024\n\nThe notice was lifted at 4pm on Saturday 19 October, six days "
     "after it was issued.", "2024-10-26"),
    ("Published 2024-03-12T10:00:00Z by staff.", "2024-03-12"),
    ("March 12, 2024 — the day it began.", "2024-03-12"),
    ("Ticket 2024-13-45 was filed; the event was on 2024-03-12.", "2024-03-12"),
    # front matter
    ("---\ntitle: Raid\ndate: 2024-03-12\n---\n\nOn 5 June 1944 they landed on the beaches of Normandy.",
     "2024-03-12"),
    # dates the body tells of are not the article's
    (HASTINGS, None),
    (NORMANS, None),
    ("On March 12, the groups claimed incursions into the border regions of the country.\n\nCopyright 2024 "
     "Example News", None),
    ("It happened on March 12 but the year is never named.", None),
    ("No date anywhere in this text, only 42 numbers.", None),
    ("", None),
])
def test_find_date(text: str, expected: str | None) -> None:
    assert find_date(text) == expected


def test_an_html_page_is_dated_by_its_meta_tags(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text('<html><head><meta property="article:modified_time" content="2024-03-14T08:00:00Z">'
                    '<meta property="article:published_time" content="2024-03-12T10:00:00Z"></head>'
                    "<body><p>On 5 June 1944 the landings began on the beaches, the museum's guide explains.</p>"
                    "</body></html>", encoding="utf-8")
    assert load(page).date == "2024-03-12"


# -- PDF -------------------------------------------------------------------------------------------------------


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    f = tmp_path / "report.pdf"
    f.write_bytes(make_pdf(["Quarterly Report (draft)", "Published 12 March 2024 by the team.",
                            "Revenue grew strongly."]))
    doc = load(f)
    assert doc.text.splitlines() == ["Quarterly Report (draft)", "Published 12 March 2024 by the team.",
                                     "Revenue grew strongly."]
    assert doc.title == "Quarterly Report (draft)"
    assert doc.date == "2024-03-12"
    assert doc.id == "report.pdf"


def test_a_pdf_paragraph_wrapped_over_lines_splits_into_whole_sentences(tmp_path: Path) -> None:
    f = tmp_path / "raid.pdf"
    f.write_bytes(make_pdf(["The Belgorod Raid", "Two anti-Kremlin Russian groups crossed over into Russia's southern",
                            "Belgorod region on Monday and captured at least one town. The Kremlin",
                            "called the fighters saboteurs."]))
    text = load(f).text
    assert [" ".join(text[s:e].split()) for s, e in sentence_spans(text)] == [
        "The Belgorod Raid",
        "Two anti-Kremlin Russian groups crossed over into Russia's southern Belgorod region on Monday and captured at "
        "least one town.",
        "The Kremlin called the fighters saboteurs."]


def test_a_pdf_word_hyphenated_at_a_line_end_is_whole_again(tmp_path: Path) -> None:
    f = tmp_path / "raid.pdf"
    f.write_bytes(make_pdf(["The incursion began at dawn on Monday, officials in the region said.",
                            "Witnesses saw the incur-", "sion of armored vehicles near a cross-", "border post."]))
    text = load(f).text
    # "incursion" is spelled elsewhere, so its hyphen goes; "crossborder" is not, so that hyphen stays
    assert text.endswith("Witnesses saw the incursion\nof armored vehicles near a cross-border\npost.")
    assert [as_prose(text[s:e]) for s, e in sentence_spans(text)][-1] == (
        "Witnesses saw the incursion of armored vehicles near a cross-border post.")


def test_pdf_without_text_and_encrypted_pdf_are_skipped(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    blank = PdfWriter()
    blank.add_blank_page(200, 200)
    buf = io.BytesIO()
    blank.write(buf)
    (tmp_path / "blank.pdf").write_bytes(buf.getvalue())
    secret = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Secret text."]))))
    secret.encrypt("password")
    buf = io.BytesIO()
    secret.write(buf)
    (tmp_path / "secret.pdf").write_bytes(buf.getvalue())
    (tmp_path / "broken.pdf").write_bytes(b"this is not a PDF at all, just text")
    (tmp_path / "cut.pdf").write_bytes(make_pdf(["Hello there."])[:150])
    found = scan([tmp_path], MB)
    assert found.documents == []
    reasons = {Path(s.path).name: s.reason for s in found.skipped}
    assert reasons["blank.pdf"].startswith("no text layer in its 1 page (a scan?): it needs OCR first")
    assert reasons["secret.pdf"] == "encrypted PDF"
    assert reasons["broken.pdf"].startswith("unreadable PDF")
    assert reasons["cut.pdf"].startswith("unreadable PDF")


# -- bad input: a Skip with the path and a reason, the rest still loads ---------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.txt").write_text("A good article.\n\nIt has two paragraphs.\n")
    (folder / "sub" / "nested.md").write_text("# Nested\n\nNested body.\n")
    (folder / "page.html").write_text("<html><body><h1>Page</h1><p>Page body.</p></body></html>")
    (folder / "report.pdf").write_bytes(make_pdf(["PDF body text."]))
    (folder / "binary.txt").write_bytes(b"looks like text\x00\x01\x02\xff then binary")
    (folder / "empty.md").write_bytes(b"")
    (folder / "blank.txt").write_bytes(b"  \n\n\t \n")
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (folder / "huge.txt").write_text("big. " * 300_000)  # 1.5 MB
    (folder / "empty-page.html").write_text("<html><head><title>T</title></head><body><script>x()</script></body>"
                                             "</html>")
    (folder / "notes.docx").write_bytes(b"PK\x03\x04 not supported")
    (folder / ".hidden.txt").write_text("dotfiles are not articles")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD.txt").write_text("nor is anything under a dot folder")
    return folder


def test_bad_files_are_skipped_with_path_and_reason_and_the_rest_loads(mixed: Path) -> None:
    found = scan([mixed], MB)
    assert sorted(d.id for d in found.documents) == ["good.txt", "page.html", "report.pdf", "sub/nested.md"]
    reasons = {s.path: s.reason for s in found.skipped}
    assert reasons == {
        str(mixed / "binary.txt"): "binary content (NUL bytes) in a text file",
        str(mixed / "empty.md"): "empty file",
        str(mixed / "blank.txt"): "empty file",
        str(mixed / "latin1.txt"): "not valid UTF-8 (byte 0xe9 at offset 3)",
        str(mixed / "huge.txt"): "file is 1.5 MB, over the 1.0 MB limit (RAG_INGEST__MAX_FILE_MB)",
        str(mixed / "empty-page.html"): "no text after extraction",
    }
    assert found.ignored == [str(mixed / "notes.docx")]  # dot files and dot folders are not even counted
    assert found.roots == [str(mixed.resolve())]
    nested = next(d for d in found.documents if d.id == "sub/nested.md")
    assert nested.title == "Nested" and nested.source == str(mixed / "sub" / "nested.md")


def test_size_limit_is_configurable(mixed: Path) -> None:
    found = scan([mixed / "huge.txt"], 2 * MB)
    assert [d.id for d in found.documents] == ["huge.txt"] and found.skipped == []


def test_missing_path_is_reported_and_other_paths_still_load(mixed: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    found = scan([missing, mixed / "good.txt"], MB)
    assert found.skipped == [Skip(str(missing), "no such file or folder")]
    assert [d.id for d in found.documents] == ["good.txt"]
    assert found.roots == []  # a single file given directly puts no folder in prune scope


def test_unsupported_file_given_directly_is_skipped_with_the_supported_list(mixed: Path) -> None:
    found = scan([mixed / "notes.docx"], MB)
    assert found.documents == []
    (skip,) = found.skipped
    assert skip.path == str((mixed / "notes.docx").resolve())
    assert skip.reason.startswith("unsupported file type .docx")
    assert all(ext in skip.reason for ext in SUPPORTED)


def test_file_without_extension_is_unsupported(tmp_path: Path) -> None:
    f = tmp_path / "README"
    f.write_text("text")
    with pytest.raises(BadFile, match=r"unsupported file type \(none\)"):
        load(f)


def test_unreadable_file_is_skipped(mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, where chmod 000 does not stop reads: make the read itself fail as it would.
    real = os.open

    def open_file(path: Any, flags: int, *args: Any) -> int:
        if Path(path).name == "good.txt":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", open_file)
    found = scan([mixed], MB)
    assert {s.path: s.reason for s in found.skipped}[str(mixed / "good.txt")] == "cannot read: Permission denied"
    assert "page.html" in {d.id for d in found.documents}


def test_binary_and_undecodable_raise_badfile_directly(tmp_path: Path) -> None:
    f = tmp_path / "x.md"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(BadFile, match="binary"):
        load(f)
    f.write_bytes(b"valid start \xc3\x28 broken")
    with pytest.raises(BadFile, match=r"not valid UTF-8 \(byte 0xc3 at offset 12\)"):
        load(f)


def test_same_id_from_two_folders_is_reported_not_overwritten(tmp_path: Path) -> None:
    for name in ["a", "b"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "same.txt").write_text(f"Text from {name}.")
    found = scan([tmp_path / "a", tmp_path / "b"], MB)
    assert [d.text for d in found.documents] == ["Text from a."]
    (skip,) = found.skipped
    assert skip.path == str((tmp_path / "b" / "same.txt").resolve())
    assert "already taken" in skip.reason and str((tmp_path / "a" / "same.txt").resolve()) in skip.reason


def test_a_file_given_twice_is_one_document(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("Text one.")
    (tmp_path / "a" / "two.txt").write_text("Text two.")
    # the same folder twice, and a file of it again: each file once, nothing reported
    found = scan([tmp_path / "a", tmp_path / "a", tmp_path / "a" / "one.txt"], MB)
    assert sorted(d.id for d in found.documents) == ["one.txt", "two.txt"] and found.skipped == []


def test_doc_ids_are_relative_to_the_folder_given(tmp_path: Path) -> None:
    (tmp_path / "corpus" / "2024" / "03").mkdir(parents=True)
    (tmp_path / "corpus" / "2024" / "03" / "story.txt").write_text("Story.")
    (tmp_path / "corpus" / "top.txt").write_text("Top.")
    assert sorted(d.id for d in scan([tmp_path / "corpus"], MB).documents) == ["2024/03/story.txt", "top.txt"]
    assert [d.id for d in scan([tmp_path / "corpus" / "2024"], MB).documents] == ["03/story.txt"]


def test_links_are_followed_and_a_link_to_nothing_is_reported(tmp_path: Path) -> None:
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    (corpus / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "bell.txt").write_text("The keeper rang the bell.")
    (corpus / "sub" / "boats.txt").write_text("Twelve boats in the bay.")
    (corpus / "linked").symlink_to(elsewhere)  # a linked folder is walked, as a linked file is read
    (corpus / "bell-link.txt").symlink_to(elsewhere / "bell.txt")
    (corpus / "sub" / "up").symlink_to(corpus)  # a link up the tree: walked once, no loop
    (corpus / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    (corpus / "a-link-to-boats.txt").symlink_to(corpus / "sub" / "boats.txt")  # beside its target: no copy
    found = scan([corpus], MB)
    assert [d.id for d in found.documents] == ["bell-link.txt", "sub/boats.txt"]
    (skip,) = found.skipped
    assert skip.path == str(corpus.resolve() / "gone.txt")
    assert skip.reason == f"a symbolic link to {tmp_path / 'nowhere.txt'}, which does not exist"
    # a link given by name is a document of that name, not of its target's
    assert [(d.id, d.source) for d in scan([corpus / "bell-link.txt"], MB).documents] == [
        ("bell-link.txt", str(corpus / "bell-link.txt"))]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_text_saved_as_utf16_or_utf32_with_a_byte_order_mark_is_read(tmp_path: Path, codec: str) -> None:
    # Windows editors save "Unicode" text as UTF-16 with a byte-order mark; it is text, not binary content
    f = tmp_path / "note.txt"
    bom = {"utf-16-be": b"\xfe\xff"}.get(codec, b"")
    f.write_bytes(bom + "Der Bürgermeister sprach.\r\nZweite Zeile.".encode(codec))
    doc = load(f)
    assert doc.text == "Der Bürgermeister sprach.\nZweite Zeile." and doc.title == "Der Bürgermeister sprach."
    f.write_bytes(b"\xff\xfeP\x00\x00\x00K\x00")  # a mark, then a NUL character: binary after all
    with pytest.raises(BadFile, match="binary"):
        load(f)


def test_an_html_page_in_the_charset_it_declares_is_read(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    body = "<p>Le café “ouvert” ferme à midi.</p></body></html>"
    page.write_bytes(f'<html><head><meta charset="ISO-8859-1"><title>Café</title></head><body>{body}'
                     .encode("cp1252"))
    doc = load(page)  # ISO-8859-1 is read as windows-1252, as browsers do: the curly quotes come through
    assert (doc.title, doc.text) == ("Café", "Le café “ouvert” ferme à midi.")
    page.write_bytes(b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=koi8-r"></head>'
                     b"<body><p>\xf0\xd2\xc9\xd7\xc5\xd4.</p></body></html>")
    assert load(page).text == "Привет."
    page.write_bytes(f"<html><body>{body}".encode("cp1252"))  # nothing declared: UTF-8 is the only guess
    with pytest.raises(BadFile, match=r"not valid UTF-8 \(byte 0xe9"):
        load(page)
    notes = tmp_path / "notes.txt"  # a text file declares nothing, whatever it contains
    notes.write_bytes(b'<meta charset="latin1"> caf\xe9')
    with pytest.raises(BadFile, match="not valid UTF-8"):
        load(notes)


def test_a_link_that_loops_is_reported_as_a_loop(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ok.txt").write_text("Fine.")
    (corpus / "self.txt").symlink_to(corpus / "self.txt")
    (tmp_path / "loop.md").symlink_to(tmp_path / "loop.md")
    found = scan([corpus, tmp_path / "loop.md"], MB)
    assert [d.id for d in found.documents] == ["ok.txt"]
    assert {s.path: s.reason for s in found.skipped} == {
        str(corpus.resolve() / "self.txt"): "a symbolic link that loops back on itself",
        str(tmp_path / "loop.md"): "a symbolic link that loops back on itself"}


def test_the_store_folder_inside_a_corpus_is_not_part_of_it(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "store" / "bm25").mkdir(parents=True)
    (corpus / "store" / "bm25" / "tokenizer.txt").write_text("a tokenizer name")
    (corpus / "story.txt").write_text("A story.")
    assert [d.id for d in scan([corpus], MB, store=corpus / "store").documents] == ["story.txt"]
    assert len(scan([corpus], MB).documents) == 2  # any other folder of that name is read


def test_html_site_navigation_and_page_footer_are_left_out_and_table_cells_kept_apart(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '<html><body><header><h1>Kursk raid</h1><nav><a href="/">Home</a> | <a href="/w">World</a></nav></header>'
        '<div role="navigation">Skip to content</div><main><article><p>The raid began at dawn.</p>'
        "<table><tr><th>Region</th><th>Drones</th></tr><tr><td>Kursk</td><td>300</td></tr></table>"
        "<footer>By Anna Ross, 12 March 2024</footer></article></main>"
        "<footer>© 2024 Example News. Privacy | Terms</footer></body></html>", encoding="utf-8")
    doc = load(page)
    assert doc.text == ("Kursk raid\n\nThe raid began at dawn.\n\nRegion | Drones\n\nKursk | 300\n\n"
                        "By Anna Ross, 12 March 2024")  # an article's own footer is part of it
    assert doc.title == "Kursk raid" and doc.date == "2024-03-12"  # a short page: its byline is its dateline

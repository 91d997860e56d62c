"""Load files into normalised Documents: text, title, date, content hash; bad files become Skips with a reason."""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rag.chunk import wrapped_breaks
from rag.types import Document

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str

    @classmethod
    def id_taken(cls, path: str, doc_id: str, holder: str) -> Skip:
        """Two files would be one document: the second never replaces the first."""
        return cls(path, f"document id {doc_id!r} already taken by {holder}")


class BadFile(Exception):
    """A file that cannot become a Document; the message says why."""


@dataclass(frozen=True)
class Scan:
    documents: list[Document]
    skipped: list[Skip]
    roots: list[str]  # absolute folders whose documents are in sync scope (for pruning)
    ignored: list[str]  # files of unsupported types met while walking folders
    unchanged: list[str] = field(default_factory=list)  # ids of files whose bytes match `known`: not parsed
    gone: list[str] = field(default_factory=list)  # absolute paths given that do not exist (also in `skipped`)


def scan(paths: list[Path], max_bytes: int, known: Mapping[tuple[str, str], str] | None = None,
         store: Path | None = None, stored_ids: Mapping[str, str] | None = None) -> Scan:
    """Load every supported file under `paths`; a document's id is its path relative to the folder given, or the
    id the store already holds it under (`stored_ids`: source path -> doc id), so that the same file ingested
    through its parent folder is the same document, not a second copy of it. `known` maps (doc id, source path)
    to the file hash the store holds: a file with the same bytes is listed in `unchanged` without being parsed,
    which makes re-ingesting an unchanged corpus cheap. The `store` folder is never read as part of a corpus it
    sits in."""
    known, stored_ids = known or {}, stored_ids or {}
    not_corpus = {os.path.realpath(store)} if store else set()
    unchanged: list[str] = []
    docs: list[Document] = []
    skipped: list[Skip] = []
    roots: list[str] = []
    ignored: list[str] = []
    seen_ids: dict[str, str] = {}
    gone: list[str] = []
    for path in paths:
        if not path.exists():
            skipped.append(Skip(str(path), why_missing(path)))
            gone.append(os.path.abspath(path))
            continue
        if path.is_dir():
            root = path.resolve()
            roots.append(str(root))
            files, not_read, broken = _walk(root, not_corpus)
            ignored += not_read
            skipped += broken
        else:  # a link's own name is the document's, as it is for a link met in a folder
            file = Path(os.path.abspath(path))
            root, files = file.parent, [file]
        for file in files:
            doc_id = stored_ids.get(str(file)) or file.relative_to(root).as_posix()
            if not is_utf8(doc_id):  # a name in another encoding than UTF-8 cannot be stored or cited
                shown = str(file).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                skipped.append(Skip(shown, "the file name is not valid UTF-8: rename the file"))
                continue
            if seen_ids.get(doc_id) == str(file):  # the same file through two arguments ("c1 c1", "c1 c1/a.txt")
                continue
            if doc_id in seen_ids:
                skipped.append(Skip.id_taken(str(file), doc_id, seen_ids[doc_id]))
                continue
            try:
                raw = read_file(file, max_bytes)
                file_hash = hashlib.sha256(raw).hexdigest()
                if known.get((doc_id, str(file))) == file_hash:
                    unchanged.append(doc_id)
                else:
                    docs.append(parse_file(raw, file, doc_id, file_hash))
            except BadFile as e:
                skipped.append(Skip(str(file), str(e)))
                continue
            seen_ids[doc_id] = str(file)
    return Scan(docs, skipped, roots, ignored, unchanged, gone)


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(root: Path, left_out: set[str]) -> tuple[list[Path], list[str], list[Skip]]:
    """The supported files under `root` (hidden ones and the real folders `left_out` left out), the others, and
    the links to nothing.
    A linked folder is followed as a linked file is; each real folder and file is read once, so a link up cannot
    loop and a link beside its target adds no copy."""
    files: list[Path] = []
    ignored: list[str] = []
    broken: list[Skip] = []
    walked: set[str] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in walked:
            subfolders.clear()
            continue
        walked.add(real)
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and not is_store(Path(folder, d))
                         and os.path.realpath(os.path.join(folder, d)) not in left_out]
        for name in names:
            path = Path(folder, name)
            if name.startswith(".") or not (path.is_file() or path.is_symlink()):
                continue
            if path.suffix.lower() not in SUPPORTED:
                ignored.append(str(path))
            elif path.exists():
                files.append(path)
            else:
                broken.append(Skip(str(path), why_missing(path)))
    return _one_name_per_file(files), ignored, broken


def is_store(folder: Path) -> bool:
    """Is this a folder `rag` keeps a store in (`--home`): its lock beside its BM25 index? Another store's files
    (the index's vocabulary is a .txt) are no articles."""
    return (folder / "write.lock").is_file() and (folder / "bm25").is_dir()


def why_missing(path: Path) -> str:
    """Why a path that does not exist cannot be read: nothing there, a link to nothing, or links in a loop."""
    if not path.is_symlink():
        return "no such file or folder"
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link that loops back on itself"
    return f"a symbolic link to {os.readlink(path)}, which does not exist"


def _one_name_per_file(files: list[Path]) -> list[Path]:
    """A file met under several names (a link beside its target) is one document, by its real name if the walk met
    it, else by the first name in order."""
    by_target: dict[str, Path] = {}
    for path in sorted(files):
        target = os.path.realpath(path)
        if target not in by_target or target == str(path):
            by_target[target] = path
    return sorted(by_target.values())


def load_file(path: Path, doc_id: str, max_bytes: int) -> Document:
    raw = read_file(path, max_bytes)
    return parse_file(raw, path, doc_id, hashlib.sha256(raw).hexdigest())


def read_file(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, or BadFile for an unsupported, unreadable, oversized or empty file."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise BadFile(f"unsupported file type {suffix or '(none)'}; expected one of {', '.join(sorted(SUPPORTED))}")
    too_large = f"over the {max_bytes / 1e6:.1f} MB limit (RAG_INGEST__MAX_FILE_MB)"
    try:
        # Checked before opening and again on the open file (opened without waiting: a FIFO would block): a
        # device, FIFO or socket behind a text file's name is never read, and no file past the limit (/dev/zero).
        if not stat.S_ISREG(mode := os.stat(path).st_mode):
            raise BadFile(f"not a regular file but {_file_kind(mode)}: only files are read")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise BadFile(f"not a regular file but {_file_kind(info.st_mode)}: only files are read")
            if info.st_size > max_bytes:
                raise BadFile(f"file is {info.st_size / 1e6:.1f} MB, {too_large}")
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise BadFile(f"cannot read: {e.strerror or e}") from e
    if len(raw) > max_bytes:  # it grew since it was measured
        raise BadFile(f"file grew while it was read, {too_large}")
    if not raw.strip():
        raise BadFile("empty file")
    return raw


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def parse_file(raw: bytes, path: Path, doc_id: str, file_hash: str) -> Document:
    """Text and metadata of a file's bytes, by its type; BadFile when no text can be had."""
    suffix = path.suffix.lower()
    declared = None
    if suffix == ".pdf":
        text, title = _pdf_text(raw), ""
    else:
        html = suffix in {".html", ".htm"}
        decoded = _decode(raw, html)
        text, title = _html_text(decoded) if html else (decoded, "")
        declared = html_meta_date(decoded) if html else None
    text = normalise(text)
    if suffix == ".pdf":
        text = join_line_end_hyphens(text)
    if not text:
        raise BadFile("no text after extraction")
    return Document(
        id=doc_id,
        text=text,
        title=_CONTROL.sub("", title) or guess_title(text, markdown=suffix in {".md", ".markdown"}),
        source=str(path),
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        date=declared or find_date(text),
        file_hash=file_hash,
    )


# UTF-32 LE's mark begins with UTF-16 LE's, so it is tried first.
_BYTE_ORDER_MARKS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# An HTML page states its charset in its first 1024 bytes (the HTML standard's prescan).
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([-\w.:]+)", re.I)
_WINDOWS_1252_LABELS = frozenset(["iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii",
                                  "windows-1252", "cp1252"])  # browsers read all of these as windows-1252


def _decode(raw: bytes, html: bool = False) -> str:
    """Text in UTF-8; in UTF-16 or UTF-32 with a byte-order mark (Windows editors save "Unicode" so); for an HTML
    page that is not UTF-8, in the charset it declares."""
    for mark, codec in _BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError as e:
                raise BadFile(f"not valid {codec.upper()} (byte 0x{raw[e.start]:02x} at offset {e.start})") from e
            if "\x00" in text:
                raise BadFile("binary content (NUL characters) in a text file")
            return text
    if b"\x00" in raw[:8192]:
        if (unmarked := _utf16_without_mark(raw)) is not None:
            return unmarked
        raise BadFile("binary content (NUL bytes) in a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        declared = _META_CHARSET.search(raw[:1024]) if html else None
        if declared:
            label = declared.group(1).decode("ascii", "replace").lower()
            for codec in (["cp1252", "latin-1"] if label in _WINDOWS_1252_LABELS else [label]):
                try:
                    return raw.decode(codec)
                except (LookupError, UnicodeDecodeError):
                    continue
            raise BadFile(f"not valid {label} as its <meta> declares, nor UTF-8") from e
        raise BadFile(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from e


# C0 and C1 control characters but tab and newline (\r, \f and \v become line ends and spaces first): an escape
# sequence in an article must never reach a terminal, nor a NUL the store.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def normalise(text: str) -> str:
    """NFC, Unix newlines, no control characters but tab and newline, no trailing spaces, at most one blank line
    in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text.replace("\f", "\n").replace("\v", " "))
    text = re.sub(r"[ \t\f\v]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_LINE_END_HYPHEN = re.compile(r"\b([^\W\d_]*[a-z])-\n([a-z]+)(\S*)(?: +|(?=\n)|$)")


def join_line_end_hyphens(text: str) -> str:
    """A word hyphenated at a line end, as PDF pages set it ("coope-\\nration"), made whole again, with the line
    break moved after it. The hyphen goes when the document spells the joined word elsewhere ("cooperation"); it
    stays when it does not, since "cross-\\nborder" may be a compound."""
    words = set(re.findall(r"[^\W\d_]+", text.lower()))

    def join(m: re.Match[str]) -> str:
        left, right, tail = m.groups()
        hyphen = "" if (left + right).lower() in words else "-"
        return f"{left}{hyphen}{right}{tail}" + ("\n" if m.group().endswith(" ") else "")

    return _LINE_END_HYPHEN.sub(join, text)


_BLOCK_TAGS = frozenset(["p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul",
                         "ol", "dl", "dt", "dd", "table", "tr", "pre", "blockquote", "figure", "figcaption", "br",
                         "hr", "h1", "h2", "h3", "h4", "h5", "h6", "title"])
_DROPPED_TAGS = frozenset(["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "nav"])
_PRE_TAGS = frozenset(["pre", "textarea"])


@dataclass(frozen=True)
class _End:
    """Where an element ends, met while walking the tree."""

    name: str
    start: int  # how many text parts there were where it began


def _html_text(html: str) -> tuple[str, str]:
    """Visible text only: scripts, styles, comments and elements hidden by attributes or by the page's own CSS
    (`rag.hidden`) never reach the store. One walk of the tree; block elements make paragraph breaks, and as in a
    browser any other run of whitespace (a wrapped source line included) is one space, so a line break of the
    source never splits a sentence."""
    from bs4 import BeautifulSoup, CData, NavigableString, Tag

    from rag.hidden import hidden_parts

    soup = BeautifulSoup(html, "lxml")
    gone, unseen = hidden_parts(soup)
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    parts: list[str] = []
    h1_at: tuple[int, int] | None = None  # where the first visible <h1> starts and ends in `parts`
    in_pre = 0  # inside <pre> / <textarea> line breaks are kept
    stack: list[object] = list(reversed(soup.contents))
    while stack:
        node = stack.pop()
        if isinstance(node, _End):
            in_pre -= node.name in _PRE_TAGS
            if node.name == "h1" and h1_at is None:
                h1_at = (node.start, len(parts))
            if node.name in _BLOCK_TAGS:
                parts.append("\n\n")
        elif isinstance(node, NavigableString):
            if type(node) in (NavigableString, CData) and id(node.parent) not in unseen:  # nor a comment
                parts.append(str(node) if in_pre else re.sub(r"\s+", " ", node))
        elif isinstance(node, Tag) and node.name not in _DROPPED_TAGS and id(node) not in gone \
                and not _is_hidden(node) and not _is_page_chrome(node):
            if node.name in _BLOCK_TAGS:
                parts.append("\n\n")
            elif node.name in ("td", "th") and node.find_previous_sibling(["td", "th"]):
                parts.append(" | ")  # a row's cells stay apart: "Leeds | 300", not "Leeds300"
            in_pre += node.name in _PRE_TAGS
            stack.append(_End(node.name, len(parts)))
            stack.extend(reversed(node.contents))
    if not title and h1_at is not None:
        title = " ".join("".join(parts[h1_at[0]:h1_at[1]]).split())
    lines = (" ".join(line.split()) for line in "".join(parts).split("\n"))
    return "\n".join(lines), title


def _is_page_chrome(tag) -> bool:  # type: ignore[no-untyped-def]
    """Site navigation and the page's own footer (not an article's): links and legal text, never the story."""
    if str(tag.attrs.get("role", "")).lower() == "navigation":
        return True
    return bool(tag.name == "footer" and not tag.find_parent(["article", "main"]))


def _is_hidden(tag) -> bool:  # type: ignore[no-untyped-def]
    attrs = tag.attrs
    return (
        "hidden" in attrs
        or str(attrs.get("aria-hidden", "")).lower() == "true"
        or (tag.name == "input" and str(attrs.get("type", "")).lower() == "hidden")
    )


def _utf16_without_mark(raw: bytes) -> str | None:
    """Text saved as UTF-16 without a byte-order mark, told by its NUL bytes: in every other byte, on one side, as
    text in a Latin script is; None when the bytes are not such text."""
    sample = raw[:8192] if len(raw) % 2 == 0 else b""
    for codec, zeros in (("utf-16-le", sample[1::2]), ("utf-16-be", sample[0::2])):
        other = sample[0::2] if codec == "utf-16-le" else sample[1::2]
        if not sample or zeros.count(0) < len(zeros) * 0.3 or other.count(0):
            continue
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            return None
        controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
        return text if controls == 0 else None
    return None


def _pdf_text(raw: bytes) -> str:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings would stand beside our one-line skip reason

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise BadFile("encrypted PDF")
        text = "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as e:
        raise BadFile(f"unreadable PDF: {e}") from e
    if reader.pages and not text.strip():
        pages = len(reader.pages)
        raise BadFile(f"no text layer in its {pages} page{'s' if pages > 1 else ''} (a scan?): it needs OCR "
                      "first, e.g. `ocrmypdf in.pdf out.pdf`")
    return text


_MD_HEADING = re.compile(r"#{1,6}\s+(.*?)(?:\s+#+)?\s*$")  # ATX heading, optional closing hashes


def guess_title(text: str, markdown: bool = False) -> str:
    """The first Markdown heading (for Markdown), else the first line, a hard-wrapped one with the lines it wraps
    into; cut at a word after 120 characters."""
    if markdown:
        for line in text.splitlines():
            heading = _MD_HEADING.match(line.strip())
            if heading:
                return heading.group(1)
    text = text.strip()
    wrapped = wrapped_breaks(text)
    end = next((i for i, ch in enumerate(text) if ch == "\n" and i not in wrapped), len(text))
    first = " ".join(text[:end].split())
    if len(first) <= 120:
        return first
    return first[:120].rsplit(" ", 1)[0] + "…"


# The calendar's words and a year, for every stage that reads dates (ingest, briefing events and headings).
MONTHS = {m: i for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"], start=1)}
_MONTH = "(" + "|".join(m.title() for m in MONTHS) + ")"
YEAR = re.compile(r"(?<![\d.,])(1[0-9]{3}|20[0-9]{2})(?!\d|[.,]\d)")  # 1000-2099, not part of "2.2024" or "12024"
_MONTH_YEAR = re.compile(r"\b(" + "|".join(MONTHS) + r")\b(?:\D{0,8}?\b(\d{4})\b)?", re.I)


def month_and_year(text: str) -> tuple[int, int | None, str] | None:
    """The first month the text names, the year written after it (if any) and the words matched: "May 2023" ->
    (5, 2023, "May 2023")."""
    m = _MONTH_YEAR.search(text)
    return (MONTHS[m.group(1).lower()], int(m.group(2)) if m.group(2) else None, m.group(0)) if m else None
_DATE_PATTERNS = [
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?!\d)"), ("y", "m", "d")),  # also 2024-03-12T10:00Z
    (re.compile(_MONTH + r"\s+(\d{1,2}),?\s+(\d{4})\b"), ("M", "d", "y")),
    (re.compile(r"\b(\d{1,2})\s+" + _MONTH + r",?\s+(\d{4}|\d{2})\b"), ("d", "M", "y")),
]


def find_date(text: str) -> str | None:
    """The article's own date, as YYYY-MM-DD: from its front matter (a `date:` line between `---` lines at the top)
    or its dateline (a date in the lines before the body begins, or in the body's opening words before a dash, a
    colon or a full stop), never a date the body tells of: an encyclopedia article about 1066 is not of 1066."""
    return first_date(front_matter(text)) or first_date(dateline(text))


def first_date(text: str) -> str | None:
    """The first full date (day, month and year) the text states, as YYYY-MM-DD."""
    for pattern, order in _DATE_PATTERNS:
        for m in pattern.finditer(text):  # an impossible match (e.g. 2024-13-45) does not hide a real date
            parts = dict(zip(order, m.groups(), strict=False))
            year = int(parts["y"])
            year += 2000 if year < 100 else 0
            month = int(parts["m"]) if "m" in parts else MONTHS[parts["M"].lower()]
            iso = _iso(year, month, int(parts["d"]))
            if iso:
                return iso
    return None


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---(?:\n|\Z)", re.S)
_FRONT_DATE = re.compile(r"^(?:date|published|created)\s*:\s*[\"']?(.+?)[\"']?\s*$", re.I | re.M)


def front_matter(text: str) -> str:
    """The `date:` value of a front-matter block at the top of the text ("" when there is none)."""
    block = _FRONT_MATTER.match(text)
    found = _FRONT_DATE.search(block.group(1)) if block else None
    return found.group(1) if found else ""


_SENTENCE_END = re.compile(r"[.!?][\"'”’)*]*(\s|$)")
_LEDE_BREAK = re.compile(r"\s[-–—]+\s|:\s|[.][*_]*\s")  # "Port Ellery, 5 May 2024 - ...", "23 May 23: ..."


def dateline(text: str, max_paragraphs: int = 6, reach: int = 80) -> str:
    """What comes before the body: the paragraphs before the first prose paragraph (title, byline, date line), and
    the prose paragraph's opening words up to a dash, colon or full stop within its first `reach` characters."""
    head = []
    for paragraph in text.strip().split("\n\n")[:max_paragraphs]:
        if len(paragraph.split()) >= 10 and _SENTENCE_END.search(paragraph):  # prose: the body begins
            brk = _LEDE_BREAK.search(paragraph[:reach])
            head.append(paragraph[:brk.start()] if brk else "")
            break
        head.append(paragraph)
    return "\n".join(head)


_META_TAG = re.compile(r"<meta\b[^>]*>", re.I)
_META_NAME = re.compile(r"\b(?:name|property|itemprop)\s*=\s*[\"']?([^\"'\s>]+)", re.I)
_META_CONTENT = re.compile(r"\bcontent\s*=\s*[\"']([^\"']*)", re.I)


def html_meta_date(page: str) -> str | None:
    """The publication date an HTML page declares in a `<meta>` tag whose name speaks of publishing or a date
    (`article:published_time`, `date`, `DC.date`, `datePublished`); a modification date only when nothing else."""
    found: dict[bool, str] = {}
    for tag in _META_TAG.findall(page):
        name, content = _META_NAME.search(tag), _META_CONTENT.search(tag)
        low = name.group(1).lower() if name else ""
        if content and ("publish" in low or low.endswith("date") or low.endswith(".date")):
            day = first_date(content.group(1))
            if day:
                found.setdefault("modif" not in low, day)
    return found.get(True) or found.get(False)


def _iso(year: int, month: int, day: int) -> str | None:
    if 1 <= month <= 12 and 1 <= day <= 31:
        return f"{year:04d}-{month:02d}-{day:02d}"
    return None

"""The HTML briefing rendered by a real browser: headless Chromium takes a screenshot and dumps the rendered DOM;
the citation links, their quoted passages and the Sources list must be there and match one to one."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from typer.testing import CliRunner

from rag.cli import State, app

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
TOPIC = "cross-border incursions into Russia"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs the Debian packages chromium, chromium-driver)")
        pytest.skip("chromium is not installed: apt-get install -y chromium chromium-driver")
    return path


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed (still filtered) scanlines of a PNG: enough to tell a blank page."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("brief-html")
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["--home", str(tmp / "home"), "ingest", str(CORPUS)])
        assert r.exit_code == 0, r.output
        out = tmp / "briefing.html"
        r = runner.invoke(app, ["--home", str(tmp / "home"), "brief", TOPIC, "-o", str(out)])
        assert r.exit_code == 0, r.output
        assert "support audit:" in r.stderr
    finally:
        State.home = None
    return out


def test_page_is_self_contained(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    soup = BeautifulSoup(html, "lxml")
    assert soup.find("style") is not None
    assert not soup.find_all(["script", "link", "img", "iframe", "object", "embed"])
    assert "src=" not in html and "url(" not in html and "@import" not in html and "http" not in html


def test_rendered_dom_has_matching_citation_links_and_sources(page: Path, tmp_path: Path) -> None:
    result = run_chromium(["--dump-dom", page.as_uri()], tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = BeautifulSoup(result.stdout, "lxml")
    assert dom.find("h1") and dom.find("h1").get_text().startswith("Briefing:")
    links = dom.select('a[href^="#src-"]')
    entries = dom.select('ol.sources li[id^="src-"]')
    assert links and entries
    targets = {a["href"][1:] for a in links}
    ids = [li["id"] for li in entries]
    assert len(ids) == len(set(ids)) == len(targets), "one source entry per cited number"
    assert targets == set(ids), f"links without entry: {targets - set(ids)}, entries never cited: {set(ids) - targets}"
    assert ids == [f"src-{n}" for n in range(1, len(ids) + 1)]
    by_id = {li["id"]: li for li in entries}
    for a in links:
        entry = by_id[a["href"][1:]]
        quote = entry.find("q").get_text()
        n = a["href"].removeprefix("#src-")
        assert a.contents[0].strip() == f"[{n}]"
        assert quote and quote in a["title"], "the link's title reveals the quoted passage"
        pop = a.select_one(".pop")
        assert pop is not None and quote in pop.get_text(), "the hover/focus popover shows the quote"
        assert entry.select_one(".file").get_text().endswith(".txt")
    headings = [h.get_text() for h in dom.find_all("h2")]
    assert headings[0] == "Overview" and headings[-2:] == ["Support audit", "Sources"]
    sections = [h for h in headings if h not in ("Overview", "Where the sources disagree", "Support audit", "Sources")]
    assert len(sections) >= 2, "the two events (May 2023, March 2024) each have a section of their own"
    assert "Where the sources disagree" in headings


def test_screenshot_is_a_rendered_page(page: Path, tmp_path: Path) -> None:
    png = tmp_path / "briefing.png"
    result = run_chromium([f"--screenshot={png}", "--window-size=1200,2000", page.as_uri()], tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 30_000, "a rendered page of text is not a tiny image"
    width, height, raw = png_pixels(png)
    assert (width, height) == (1200, 2000)
    # a one-colour image compresses to a handful of distinct bytes; text, rules and links give many
    assert len(set(raw)) > 64
    keep = os.environ.get("RAG_KEEP_SCREENSHOT")
    if keep:  # look at it yourself: RAG_KEEP_SCREENSHOT=/tmp/briefing.png pytest tests/test_brief_html.py
        shutil.copy2(png, keep)

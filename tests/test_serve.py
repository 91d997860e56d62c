"""rag serve: the HTTP API over a real small store (the real embedding model and embedded Chroma), its limits, the
bearer token, the page routes, and `rag ask` through a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rag.answer import AnswerChain
from rag.cli import app as cli_app
from rag.config import AnswerSettings, ServeSettings, Settings
from rag.serve.app import create_app
from rag.serve.guard import is_loopback
from rag.service import Service, ServiceError
from rag.testing import fake_chat, free_port, ingest_folder
from rag.testing import running_server as serving
from rag.types import Answer

ARTICLES = {
    "harbour.txt": "Harbour Bridge Reopens\n\nThe Harbour Bridge reopened on Monday after three weeks of repairs. "
                   "The city council said the repairs cost 4 million euros. Engineers replaced 120 steel cables.\n",
    "library.txt": "New Library Opens\n\nThe central library opened its new wing on 2 March 2024. The wing holds "
                   "40,000 books. Mayor Anna Berg cut the ribbon at the ceremony.\n",
    "flood.txt": "River Flood Warning\n\nThe weather service issued a flood warning for the Elm River on Friday. "
                 "Water levels rose by two metres overnight. Residents of Millford were told to move to higher "
                 "ground.\n",
}
TOKEN = "s3cret-token-for-tests"
runner = CliRunner()


@pytest.fixture(scope="module")
def small_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Three tiny articles ingested with the real embedding model into a store of this module's own."""
    from rag.embed import LocalEmbedder

    corpus = tmp_path_factory.mktemp("serve-corpus")
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    home = tmp_path_factory.mktemp("serve-home")
    ingest_folder(home, [corpus], LocalEmbedder())
    return Settings(home=home, chroma_url=None)


@pytest.fixture(scope="module")
def service(small_home: Settings) -> Service:
    return Service(small_home, backend="extractive").load()


def client_for(service: Service, **serve: Any) -> TestClient:
    settings = service.settings.model_copy(update={"serve": ServeSettings(**serve)})
    return TestClient(create_app(service, settings), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[TestClient]:
    with client_for(service) as c:
        yield c


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# -- the API ---------------------------------------------------------------------------------------------------


def test_ask_returns_the_cli_json_and_every_quote_is_the_documents_own_text(client: TestClient) -> None:
    reply = client.post("/v1/ask", json={"question": "How much did the bridge repairs cost?", "k": 3})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert {"question", "answer", "abstained", "citations", "backend", "timings_ms"} <= set(answer)
    assert answer["backend"] == "extractive" and not answer["abstained"]
    assert "4 million euros" in answer["answer"] and answer["citations"]
    assert "passages" not in answer
    for c in answer["citations"]:
        doc = client.get(f"/v1/documents/{c['doc']}")
        assert doc.status_code == 200
        assert doc.json()["text"][c["start"]:c["end"]] == c["quote"]
        span = client.get(f"/v1/documents/{c['doc']}", params={"start": c["start"], "end": c["end"]}).json()
        assert (span["text"], span["start"], span["end"]) == (c["quote"], c["start"], c["end"])


def test_ask_with_passages_and_a_document_filter(client: TestClient) -> None:
    answer = client.post("/v1/ask", json={"question": "Who cut the ribbon?", "docs": ["library.txt"],
                                          "with_passages": True}).json()
    assert answer["passages"] and {p["doc"] for p in answer["passages"]} == {"library.txt"}
    assert Answer.from_json(answer).passages[0].doc == "library.txt"  # the client rebuilds the same Answer
    missing = client.post("/v1/ask", json={"question": "Who?", "docs": ["nothing-*.txt"]})
    assert missing.status_code == 404 and "nothing-*.txt" in missing.json()["error"]


def test_search_ranks_the_passage_that_holds_the_words(client: TestClient) -> None:
    reply = client.post("/v1/search", json={"query": "flood warning Elm River", "k": 2})
    assert reply.status_code == 200
    passages = reply.json()["passages"]
    assert len(passages) == 2 and passages[0]["doc"] == "flood.txt"
    assert [p["n"] for p in passages] == [1, 2] and passages[0]["score"] >= passages[1]["score"]


def test_documents_list_and_a_missing_document(client: TestClient) -> None:
    listed = client.get("/v1/documents").json()["documents"]
    assert [d["id"] for d in listed] == sorted(ARTICLES)
    assert listed[0]["title"] == "River Flood Warning"
    assert client.get("/v1/documents/nope.txt").status_code == 404
    outside = client.get("/v1/documents/flood.txt", params={"start": 5, "end": 100_000})
    assert outside.status_code == 400 and "outside" in outside.json()["error"]


def test_brief_carries_markdown_and_html(client: TestClient) -> None:
    reply = client.post("/v1/brief", json={"topic": "the bridge repairs", "k": 4})
    assert reply.status_code == 200, reply.text
    brief = reply.json()
    assert brief["topic"] == "the bridge repairs" and "audit" in brief
    assert brief["markdown"].strip() and brief["html"].lstrip().lower().startswith("<!doctype html")


def test_healthz_and_security_headers(client: TestClient) -> None:
    reply = client.get("/healthz")
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}
    assert reply.headers["x-content-type-options"] == "nosniff"


# -- streaming -------------------------------------------------------------------------------------------------


def test_the_extractive_stream_is_one_answer_event(client: TestClient) -> None:
    reply = client.post("/v1/ask", json={"question": "How many books does the wing hold?"},
                        headers={"accept": "text/event-stream"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    assert [e for e, _ in events] == ["answer"]
    assert "40,000" in events[0][1]["answer"]


def test_a_streaming_model_sends_its_tokens_before_the_answer(service: Service, small_home: Settings) -> None:
    reply_text = "The repairs cost 4 million euros [1]."
    service._chains["openai"] = AnswerChain(service.retriever, AnswerSettings(reader="markers"), backend="openai",
                                            model=fake_chat(reply_text))
    try:
        with client_for(service) as c:
            reply = c.post("/v1/ask", json={"question": "What did the repairs cost?", "backend": "openai",
                                            "stream": True})
    finally:
        del service._chains["openai"]
    events = sse_events(reply.text)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"token"} and len(kinds) > 2
    assert "".join(data for e, data in events if e == "token").strip() == reply_text
    assert events[-1][1]["backend"] == "openai"


def test_a_failure_after_the_stream_began_is_an_error_event(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(question: str, on_token: Any = None, **kwargs: Any) -> dict[str, Any]:
        on_token("The")
        raise ServiceError("the model server at http://127.0.0.1:1 failed", status=502)

    monkeypatch.setattr(service, "ask", failing)
    with client_for(service) as c:
        events = sse_events(c.post("/v1/ask", json={"question": "q", "stream": True}).text)
    assert events == [("token", "The"), ("error", {"error": "the model server at http://127.0.0.1:1 failed",
                                                   "status": 502})]


# -- limits ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"question": "x" * 2001}, 413, "2001 characters"),
    ({"question": "x", "k": 0}, 422, "k must be from 1 to 50"),
    ({"question": "x", "k": 51}, 422, "k must be from 1 to 50"),
    ({"question": "   "}, 400, "empty"),
    ({"question": "x", "backend": "gpt"}, 400, "unknown backend"),
    ({"question": "x", "qestion": "x"}, 422, "qestion"),
    ({}, 422, "question: Field required"),
])
def test_bad_asks_are_refused_with_a_status_and_one_line(client: TestClient, body: dict[str, Any], status: int,
                                                         says: str) -> None:
    reply = client.post("/v1/ask", json=body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert says in error and "\n" not in error


@pytest.mark.parametrize(("content", "content_type", "says"), [
    (b'{"question": ', "application/json", "not valid JSON"),
    (b'["question"]', "application/json", "JSON object"),
    (b'{"question": "Who?"}', "text/plain", "Content-Type: application/json"),
])
def test_a_body_that_is_no_json_object_is_422(client: TestClient, content: bytes, content_type: str,
                                              says: str) -> None:
    reply = client.post("/v1/ask", content=content, headers={"content-type": content_type})
    assert reply.status_code == 422 and says in reply.json()["error"]


def test_long_topic_and_query_are_refused(client: TestClient) -> None:
    assert client.post("/v1/brief", json={"topic": "t" * 2001}).status_code == 413
    assert client.post("/v1/search", json={"query": "q" * 2001}).status_code == 413


def test_a_body_over_the_limit_is_413_with_or_without_a_length(client: TestClient) -> None:
    big = json.dumps({"question": "x" * 70_000}).encode()
    sized = client.post("/v1/ask", content=big, headers={"content-type": "application/json"})
    assert sized.status_code == 413 and "64 KiB" in sized.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it comes
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    streamed = client.post("/v1/ask", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_requests_beyond_the_bound_get_503_with_retry_after(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    inside, release = threading.Event(), threading.Event()

    def slow(question: str, **kwargs: Any) -> dict[str, Any]:
        inside.set()
        release.wait(10)
        return {"answer": question}

    monkeypatch.setattr(service, "ask", slow)
    with client_for(service, max_concurrent=1) as c:
        first: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: first.update(reply=c.post("/v1/ask", json={"question": "one"})))
        worker.start()
        assert inside.wait(10)
        refused = c.post("/v1/ask", json={"question": "two"})
        assert c.get("/healthz").status_code == 200  # only /v1/ counts
        release.set()
        worker.join(10)
        after = c.post("/v1/ask", json={"question": "three"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "1 requests in flight" in refused.json()["error"]
    assert first["reply"].status_code == 200 and after.json() == {"answer": "three"}


# -- the token -------------------------------------------------------------------------------------------------


def test_with_a_token_every_v1_route_needs_the_bearer(service: Service) -> None:
    with client_for(service, token=TOKEN) as c:
        for method, path, body in (("post", "/v1/ask", {"question": "Who cut the ribbon?"}),
                                   ("get", "/v1/documents", None), ("get", "/v1/documents/flood.txt", None),
                                   ("post", "/v1/search", {"query": "flood"})):
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}):
                reply = c.request(method, path, json=body, headers=headers)
                assert reply.status_code == 401, (path, headers)
                assert reply.headers["www-authenticate"] == "Bearer" and reply.json()["error"]
            good = c.request(method, path, json=body, headers={"authorization": f"Bearer {TOKEN}"})
            assert good.status_code == 200, (path, good.text)
        assert c.get("/healthz").status_code == 200  # no corpus data: open to a load balancer's probe


def test_ingest_is_refused_without_a_configured_token(client: TestClient, tmp_path: Path) -> None:
    reply = client.post("/v1/ingest", json={"paths": [str(tmp_path)]})
    assert reply.status_code == 403 and "RAG_SERVE__TOKEN" in reply.json()["error"]


def test_ingest_with_the_token_fills_a_store_the_next_ask_reads(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.txt").write_text(ARTICLES["harbour.txt"], encoding="utf-8")
    settings = Settings(home=tmp_path / "home", chroma_url=None, serve=ServeSettings(token=TOKEN))
    auth = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(Service(settings, backend="extractive")), base_url="http://127.0.0.1") as c:
        assert c.get("/healthz").status_code == 503  # no store yet
        assert c.post("/v1/ingest", json={"paths": [str(corpus)]}).status_code == 401
        nothing = c.post("/v1/ingest", json={"paths": [str(tmp_path / "missing")]}, headers=auth)
        assert nothing.status_code == 422 and "nothing to ingest" in nothing.json()["error"]
        report = c.post("/v1/ingest", json={"paths": [str(corpus)]}, headers=auth)
        assert report.status_code == 200 and report.json()["added"] == ["harbour.txt"]
        answer = c.post("/v1/ask", json={"question": "How many cables were replaced?"}, headers=auth).json()
        assert c.get("/healthz").status_code == 200
    assert "120" in answer["answer"]


def test_a_loopback_server_without_a_token_answers_only_loopback_host_names(service: Service) -> None:
    app = create_app(service, service.settings, loopback_hosts_only=True)
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/v1/documents").status_code == 200
        assert c.get("/v1/documents", headers={"host": "localhost:8765"}).status_code == 200
        rebound = c.get("/v1/documents", headers={"host": "attacker.example:8765"})
    assert rebound.status_code == 421 and "RAG_SERVE__TOKEN" in rebound.json()["error"]


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("192.168.1.5", False), ("example.com", False)])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::"])
def test_binding_beyond_loopback_without_a_token_exits_2(host: str, tmp_path: Path) -> None:
    result = runner.invoke(cli_app, ["--home", str(tmp_path), "serve", "--host", host], env={"RAG_SERVE__TOKEN": None})
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RAG_SERVE__TOKEN" in lines[0] and host in lines[0]


def test_serve_without_a_store_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(cli_app, ["--home", str(tmp_path / "none"), "serve", "--port", "0"])
    assert result.exit_code == 2 and "rag ingest" in result.stderr


# -- routes that are not the API -------------------------------------------------------------------------------


def test_unknown_routes_are_json_under_v1_and_a_page_elsewhere(client: TestClient) -> None:
    api = client.get("/v1/nothing")
    assert api.status_code == 404 and api.json() == {"error": "no such endpoint: GET /v1/nothing"}
    wrong_method = client.get("/v1/ask")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.json()["error"]
    page = client.get("/nothing")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "/nothing" in page.text


def test_the_page_is_served_at_the_root_with_or_without_a_question(client: TestClient) -> None:
    plain, asked = client.get("/"), client.get("/", params={"q": "Who cut the ribbon?"})
    assert plain.status_code == asked.status_code == 200
    assert plain.headers["content-type"].startswith("text/html") and plain.text == asked.text
    index = Path(__file__).resolve().parent.parent / "rag" / "serve" / "static" / "index.html"
    assert plain.text == index.read_text(encoding="utf-8")


# -- rag ask through a real `rag serve` --------------------------------------------------------------------------


def rag_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from rag.cli import main; main()", *args]


@pytest.fixture(scope="module")
def running_server(small_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `rag serve` on the module's store; yields its URL."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = {**os.environ, "RAG_HOME": str(small_home.home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    url = f"http://127.0.0.1:{free_port()}"
    command = rag_command("serve", "--port", url.rsplit(":", 1)[1], "--backend", "extractive")
    with serving(command, f"{url}/healthz", log, wait_s=180, env=env):
        yield url


@pytest.mark.integration
def test_rag_ask_through_a_running_server_prints_the_local_answer(running_server: str, small_home: Settings) -> None:
    question = "How much did the bridge repairs cost?"
    env = {**os.environ, "RAG_HOME": str(small_home.home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("RAG_SERVER_URL", None)
    local = subprocess.run(rag_command("ask", "--json", "--backend", "extractive", question), env=env,
                           capture_output=True, text=True, timeout=300)
    local_text = subprocess.run(rag_command("ask", "--backend", "extractive", "--show-passages", question), env=env,
                                capture_output=True, text=True, timeout=300)
    served_env = {**env, "RAG_SERVER_URL": running_server, "RAG_HOME": "/nonexistent-store"}
    served = subprocess.run(rag_command("ask", "--json", "--backend", "extractive", question), env=served_env,
                            capture_output=True, text=True, timeout=60)
    served_text = subprocess.run(rag_command("ask", "--backend", "extractive", "--show-passages", question),
                                 env=served_env, capture_output=True, text=True, timeout=60)
    assert served.returncode == 0, served.stderr
    assert f"answered by the server at {running_server}" in served.stderr
    without_timings = [{k: v for k, v in json.loads(r.stdout).items() if k != "timings_ms"} for r in (local, served)]
    assert without_timings[0] == without_timings[1] and "4 million euros" in without_timings[0]["answer"]
    assert served_text.stdout == local_text.stdout
    assert "Sources" in served_text.stdout and "Retrieved passages" in served_text.stdout


def test_an_unreachable_server_is_one_line_and_exit_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(cli_app, ["ask", "anything"], env={"RAG_SERVER_URL": url})
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "cannot reach" in lines[0]

"""Settings errors are one line naming what is wrong: misspelt RAG_ variables, and a rag.toml that cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.cli import app
from rag.config import Settings, setting_variables

runner = CliRunner()


@pytest.mark.parametrize(("name", "nearest"), [
    ("RAG_CHROMAURL", "RAG_CHROMA_URL"),
    ("RAG_RETREIVE__K", "RAG_RETRIEVE__K"),
    ("RAG_CHUNK_SIZE", "RAG_CHUNK__SIZE"),
    ("RAG_EMBED__TIMEOUTS", None),  # a known section: its own check lists the section's keys
])
def test_a_misspelt_rag_variable_is_an_error_naming_the_nearest_setting(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, nearest: str | None) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, "4")
    with pytest.raises(ValueError) as caught:
        Settings.load()
    message = str(caught.value)
    assert "\n" not in message
    if nearest:
        assert message == f"unknown setting {name} (a RAG_ variable that is no setting): did you mean {nearest}?"
    else:
        assert message.startswith("unknown setting embed.timeouts") and "timeout_s" in message


def test_the_cli_refuses_a_misspelt_variable_before_touching_a_store(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path / "home"), "ingest", str(tmp_path)],
                           env={"RAG_CHROMAURL": "http://127.0.0.1:9"})
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: unknown setting RAG_CHROMAURL (a RAG_ variable that is no setting): "
                                     "did you mean RAG_CHROMA_URL?")
    assert not (tmp_path / "home").exists()


def test_every_setting_and_empty_variables_are_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert {"RAG_HOME", "RAG_CHROMA_URL", "RAG_EMBED__TIMEOUT_S", "RAG_RETRIEVE__K"} <= set(setting_variables())
    monkeypatch.setenv("RAG_RETREIVE__K", "")  # empty: unset, as for every RAG_ variable
    monkeypatch.setenv("RAG_EMBED__TIMEOUT_S", "2.5")
    monkeypatch.setenv("RAG_EMBED__MAX_RETRIES", "0")
    s = Settings.load()
    assert s.embed.timeout_s == 2.5 and s.embed.max_retries == 0


def _unreadable(path: Path) -> None:
    path.symlink_to("/proc/self/mem")  # a file whose read fails (EIO) even for root, whom chmod does not stop


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.mkdir(), "a folder, not a settings file"),
    (lambda p: p.write_bytes(b"[retrieve]\n# caf\xe9\nk = 4\n"), "not valid UTF-8 (invalid"),
    (_unreadable, "cannot read the settings file: Input/output error"),
], ids=["folder", "latin1", "unreadable"])
def test_a_rag_toml_that_cannot_be_read_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              make, reason: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    make(tmp_path / "rag.toml")
    result = runner.invoke(app, ["--home", str(tmp_path / "home"), "ingest", str(tmp_path)])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: rag.toml: ") and reason in lines[0], lines

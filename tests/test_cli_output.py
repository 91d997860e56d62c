"""The installed `rag` executable when its output cannot be written: a full disk, or a reader that stops early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import Settings

pytestmark = pytest.mark.integration

RAG = str(Path(sys.executable).parent / "rag")
QUESTION = "How many drones did the Russian Defense Ministry say it shot down?"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["ask", QUESTION], ["ask", "--json", QUESTION], ["brief", "Kursk"]])
def test_a_full_disk_is_one_line_and_exit_2(ingested_home: Settings, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([RAG, "--home", str(ingested_home.home), *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: cannot write the output: No space left on device"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly(ingested_home: Settings) -> None:
    # `rag ask ... | head -1` once head has left: the reading end of the pipe is closed before the first write
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([RAG, "--home", str(ingested_home.home), "ask", "--show-passages", QUESTION],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr  # 128 + SIGPIPE, as the shell reports any tool a pipe stopped
    assert done.stderr == ""

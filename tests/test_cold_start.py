"""What a cold `rag ask` imports and when: spaCy without torch, bm25s without scipy.sparse (rag.imports), and the
language model loading on a thread of its own while the first question is embedded and searched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def test_spacy_loads_without_torch_and_torch_still_imports_after() -> None:
    code = ("import sys; from rag import language; language.pipeline(); print('torch' in sys.modules); "
            "print(language.entities('Kyiv said on Monday that 30 fighters crossed.')); "
            "import torch; print(torch.ones(1).item())")
    lines = run(code)
    assert lines[0] == "False" and "'Monday'" in lines[1] and "CARDINAL" in lines[1] and lines[2] == "1.0"


def test_import_without_hides_only_while_importing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.imports import import_without

    (tmp_path / "optional_dep.py").write_text("LOADED = True\n")
    (tmp_path / "uses_optional.py").write_text(
        "try:\n    import optional_dep\n    HAS = True\nexcept ImportError:\n    HAS = False\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("optional_dep", "uses_optional"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = import_without("uses_optional", hidden=("optional_dep",))
    assert module.HAS is False and "optional_dep" not in sys.modules
    import optional_dep  # importable again once the library has imported

    assert optional_dep.LOADED
    monkeypatch.delitem(sys.modules, "uses_optional")
    assert import_without("uses_optional", hidden=("optional_dep",)).HAS is True  # loaded already: not hidden


def test_language_model_loads_once_in_the_background() -> None:
    """Two readers made at once start one loading thread; the caller that needs the pipeline waits for that load
    and gets the same pipeline, not a second copy."""
    lines = run("import threading; from rag import language\n"
                "language.load_in_background(); language.load_in_background()\n"
                "loading = [t for t in threading.enumerate() if t.name == 'spacy-load']\n"
                "first = language.pipeline()\n"
                "print(len(loading) <= 1, len(language._BACKGROUND), first is language.pipeline())\n"
                "language.load_in_background(); print(len(language._BACKGROUND))\n"
                "print(language.entities('Kyiv said on Monday that 30 fighters crossed.')[0].label)")
    assert lines == ["True 1 True", "1", "DATE"]


def test_rag_store_imports_without_scipy() -> None:
    assert run("import sys, rag.store, rag.retrieve; print('scipy.sparse' in sys.modules)") == ["False"]

"""The ONNX Runtime copy of the embedding model: the same vectors as the torch model (what the store holds), the
same truncation, a cache that no other model reuses, and a cold `rag ask` that imports neither torch nor LangChain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag import embed, onnx_embed
from rag.config import Settings

pytestmark = pytest.mark.integration  # the real model, exported for real

ROOT = Path(__file__).resolve().parent.parent
PARAGRAPH = ("Ukrainian-backed militias said on March 12, 2024 that they had crossed into the Belgorod and Kursk "
             "regions with armoured vehicles; the Russian Defense Ministry said the attacks were repelled. ")
TEXTS = [
    "Hi",
    "",
    "   leading and trailing spaces   ",
    "Which groups took part in the March 2024 incursion into Russia?",
    PARAGRAPH,
    PARAGRAPH * 3,  # about 150 tokens: padded beside short texts in one batch
    PARAGRAPH * 12,  # far past the 256-token limit: truncated
    "word " * 255,  # at the limit, give or take the special tokens
    "Zürich, São Paulo, Kraków, Москва, Київ, 東京, القاهرة — naïve café façade, ½ × 3 ≥ 1 ✓ 🙂",
    "ΑΒΓ δέλτα; Ελληνικά κείμενα με τόνους",
    "line one\nline two\ttabbed\u00a0non-breaking\u200bzero-width",
    "UPPER CASE HEADLINE: RUSSIA SAYS BORDER ATTACK REPELLED",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache folder for the module's exports; the process-wide loaders start afresh in it."""
    root = tmp_path_factory.mktemp("xdg-cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root)
    embed._load_onnx.cache_clear()
    embed._export_onnx.cache_clear()
    yield root
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
    embed._load_onnx.cache_clear()
    embed._export_onnx.cache_clear()


@pytest.fixture(scope="module")
def exported(cache: Path) -> Path:
    folder = onnx_embed.export(embed._load_minilm(), embed._minilm_path())
    assert folder is not None and folder.is_relative_to(cache)
    return folder


@pytest.fixture(scope="module")
def encoder(exported: Path) -> onnx_embed.OnnxSentenceEncoder:
    return onnx_embed.OnnxSentenceEncoder(exported, embed._minilm_path())


def torch_vectors(texts: list[str], batch_size: int = 16) -> np.ndarray:
    return embed._load_minilm().encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_onnx_vectors_match_torch(encoder: onnx_embed.OnnxSentenceEncoder, batch_size: int) -> None:
    want, got = torch_vectors(TEXTS, batch_size), encoder.encode(TEXTS, batch_size)
    assert got.shape == want.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    gaps = 1.0 - cosines(want, got)
    assert gaps.max() < 1e-4, dict(zip(TEXTS, gaps.round(7), strict=True))


def test_truncation_matches_the_model_limit(encoder: onnx_embed.OnnxSentenceEncoder) -> None:
    """Past 256 tokens nothing counts, in both runtimes; below it every token does."""
    assert encoder.max_seq_length == embed._load_minilm().max_seq_length == 256
    long, longer = PARAGRAPH * 12, PARAGRAPH * 12 + "An entirely different ending about football and weather."
    assert len(encoder.tokenizer.encode(longer).ids) == 256
    vectors = encoder.encode([long, longer, PARAGRAPH, PARAGRAPH + " Football."])
    assert cosines(vectors[:1], vectors[1:2])[0] > 1 - 1e-6  # the extra words fell past the limit
    assert cosines(vectors[2:3], vectors[3:4])[0] < 1 - 1e-3  # short enough: they count
    assert 1.0 - cosines(torch_vectors([longer]), vectors[1:2])[0] < 1e-4


def test_local_embedder_uses_the_export_under_the_same_name(exported: Path) -> None:
    embed._load_onnx.cache_clear()
    on_onnx, on_torch = embed.LocalEmbedder(), embed.LocalEmbedder(onnx=False)
    assert on_onnx.runtime == "onnx" and on_torch.runtime == "torch"
    assert on_onnx.name == on_torch.name == "local:all-MiniLM-L6-v2"  # the store sees one embedder
    q = "How many drones did the Russian Defense Ministry say it shot down?"
    assert float(on_onnx.embed_query(q) @ on_torch.embed_query(q)) > 1 - 1e-4
    assert embed.make_embedder(Settings(home=Path("unused")).embed).runtime == "onnx"
    assert embed.make_embedder(Settings(home=Path("unused"), embed={"onnx": False}).embed).runtime == "torch"


def test_cache_key_names_the_model(tmp_path: Path) -> None:
    """Another model, another tokenizer or other weights never meet an export made for this one."""
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        (model / name).write_text('{"a": 1}')
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    first = onnx_embed.model_key(model)
    assert onnx_embed.model_key(model) == first
    (model / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    second = onnx_embed.model_key(model)
    (model / "model.safetensors").write_bytes(b"\1" * 65)
    third = onnx_embed.model_key(model)
    assert len({first, second, third}) == 3
    assert onnx_embed.model_key(embed._minilm_path()) not in {first, second, third}


def test_no_export_means_torch_and_a_damaged_one_is_replaced(exported: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    embed._load_onnx.cache_clear()
    assert embed._load_onnx() is None and embed.LocalEmbedder().runtime == "torch"
    # A damaged file (cut short since it was written): dropped, so the next torch load exports it afresh.
    damaged = tmp_path / "damaged-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(damaged))
    folder = onnx_embed.export_folder(embed._minilm_path())
    folder.mkdir(parents=True)
    (folder / onnx_embed.META_FILE).write_text((exported / onnx_embed.META_FILE).read_text())
    (folder / onnx_embed.MODEL_FILE).write_bytes((exported / onnx_embed.MODEL_FILE).read_bytes()[:5000])
    embed._load_onnx.cache_clear()
    assert embed._load_onnx() is None and not folder.exists()
    embed._export_onnx.cache_clear()
    embedder = embed.LocalEmbedder()
    embedder.embed_query("exports again")
    assert embedder.runtime == "torch" and onnx_embed.exported(embed._minilm_path()) == folder
    embed._load_onnx.cache_clear()
    embed._export_onnx.cache_clear()


def test_export_is_written_whole(exported: Path) -> None:
    """Only the finished folder is left in the cache: the working folder was renamed into place."""
    assert sorted(p.name for p in exported.parent.iterdir()) == [exported.name]
    meta = json.loads((exported / onnx_embed.META_FILE).read_text())
    assert meta["max_seq_length"] == 256 and meta["pooling"] == "mean" and meta["normalize"] is True


COLD_ASK = r"""
import sys
from typer.testing import CliRunner
from rag.cli import app
result = CliRunner().invoke(app, ["--home", sys.argv[1], "ask", "--json", "--backend", "extractive",
                                  "Which groups took part in the March 2024 incursion into Russia?"])
assert result.exit_code == 0, result.output
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers", "langchain_core", "langchain_openai",
                           "scipy.sparse") if m in sys.modules)
print(heavy)
"""


def test_cold_ask_imports_neither_torch_nor_langchain_nor_scipy(exported: Path, ingested_home: Settings) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(exported.parent.parent.parent),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", COLD_ASK, str(ingested_home.home)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"

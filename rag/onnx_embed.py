"""all-MiniLM-L6-v2 on ONNX Runtime: the vectors of the sentence-transformers model (same tokenizer and truncation,
mean pooling over the attention mask, unit length) without importing torch, which a fresh `rag ask` would otherwise
spend most of its start on.

The ONNX file is exported from the loaded torch model when torch is loaded anyway (the first ingest, or the first
embedding in a process that found no file), checked against that model, and kept in a user cache folder named by the
model's files, so another model (or another version of the export) never reuses it. It is written to a folder of its
own and renamed into place in one step: a reader sees the whole export or none."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_FORMAT = 1  # part of the cache key: a change to how the file is made never meets files made before it
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"  # written last: the settings the vectors depend on (truncation, pooling)
CONFIG_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                "modules.json", "sentence_bert_config.json", "1_Pooling/config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
MAX_COSINE_GAP = 1e-4  # an export that strays further from the torch model is not kept
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """The user's cache folder ($XDG_CACHE_HOME or ~/.cache), shared by every store of the user."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rag-cite" / "onnx"


def model_key(model_dir: Path) -> str:
    """Names the model: its configuration and tokenizer files by content, its weights by size and modification
    time (hashing 90 MB would cost a cold start what the export saves)."""
    digest = hashlib.sha256(f"format {EXPORT_FORMAT}\n".encode())
    for name in CONFIG_FILES:
        path = model_dir / name
        if path.is_file():
            digest.update(f"{name}\n".encode())
            digest.update(path.read_bytes())
    for path in sorted(p for p in model_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        stat = path.stat()
        digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def export_folder(model_dir: Path) -> Path:
    return cache_root() / f"{model_dir.name}-{model_key(model_dir)}"


def exported(model_dir: Path) -> Path | None:
    """The folder of a finished export of this model, or None."""
    folder = export_folder(model_dir)
    return folder if (folder / META_FILE).is_file() and (folder / MODEL_FILE).is_file() else None


class OnnxSentenceEncoder:
    """Encodes texts as the sentence-transformers model does: its tokenizer truncated to the model's
    max_seq_length, padded per batch, mean pooling over real tokens, L2 normalisation."""

    def __init__(self, folder: Path, model_dir: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        self.max_seq_length = int(meta["max_seq_length"])
        self.lower_case = bool(meta.get("do_lower_case", False))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        padding = self.tokenizer.padding or {}
        # the file pads every text to a fixed length; sentence-transformers pads each batch to its longest text
        self.tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings about unused initialisers on every start
        self.session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        texts = [t.lower() for t in texts] if self.lower_case else list(texts)
        # longest first, as sentence-transformers batches: texts of a batch pad to about the same length
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[np.ndarray] = [np.empty(0)] * len(texts)
        for lo in range(0, len(order), batch_size):
            batch = order[lo:lo + batch_size]
            for i, vector in zip(batch, self._encode_batch([texts[i] for i in batch]), strict=True):
                vectors[i] = vector
        return np.stack(vectors)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        tokens = self.session.run(None, feed)[0]
        return mean_pool_normalise(tokens, feed["attention_mask"])


def mean_pool_normalise(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling (mean over the attention mask) and Normalize (unit length), in float32."""
    weights = mask[..., None].astype(np.float32)
    pooled = (tokens * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


# Texts the export is checked on before it is kept: padding, truncation and text outside ASCII all show.
CHECK_TEXTS = ("Short.", "The council said on March 12, 2024 that 1,500 homes now have water.",
               "Zürich, São Paulo, Москва, 東京 — naïve café façade ✓", "word " * 400)


def export(model: Any, model_dir: Path) -> Path | None:
    """Exports the loaded sentence-transformers model (when no export of it exists yet) and returns its folder;
    None when it could not be made, or strays from the torch model: queries then stay on torch."""
    if (done := exported(model_dir)) is not None:
        return done
    final = export_folder(model_dir)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=final.parent))
        umask = os.umask(0)
        os.umask(umask)
        work.chmod(0o777 & ~umask)  # a cache folder like any other, not mkdtemp's private one
    except OSError as e:
        log.warning("the ONNX copy of the embedding model cannot be written under %s (%s): questions are embedded "
                    "with torch", final.parent, e.strerror or e)
        return None
    try:
        _export_graph(model, work / MODEL_FILE)
        meta = {"max_seq_length": int(model.max_seq_length), "pooling": "mean", "normalize": True,
                "do_lower_case": bool(getattr(model[0], "do_lower_case", False)), "format": EXPORT_FORMAT}
        (work / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        gap = _cosine_gap(model, work, model_dir)
        if gap > MAX_COSINE_GAP:
            log.warning("the ONNX export of the embedding model differs from it (cosine gap %.2g): not used", gap)
            return None
        try:
            os.replace(work, final)
        except OSError:  # another process put its export there first: the same model, so the same file
            pass
        return exported(model_dir)
    except Exception as e:  # noqa: BLE001  the exporter raises many types; any failure leaves queries on torch
        log.warning("could not export the embedding model to ONNX (%s: %s): questions are embedded with torch",
                    type(e).__name__, e)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_graph(model: Any, path: Path) -> None:
    import torch

    class TokenEmbeddings(torch.nn.Module):
        """The transformer alone: token vectors in, pooling stays outside the graph (mean_pool_normalise)."""

        def __init__(self, transformer: Any) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state

    # A padded batch of two: the graph is traced through the general attention-mask path, not a shortcut for
    # batches without padding.
    sample = model.tokenizer(["a", "two words and then several more"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "token_embeddings")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks that are constant for this model
        torch.onnx.export(TokenEmbeddings(model[0].auto_model).eval(), tuple(sample[n] for n in INPUTS), str(path),
                          input_names=list(INPUTS), output_names=["token_embeddings"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)


def _cosine_gap(model: Any, folder: Path, model_dir: Path) -> float:
    """The largest 1 - cosine between the torch model's and the export's vectors of CHECK_TEXTS."""
    want = model.encode(list(CHECK_TEXTS), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    got = OnnxSentenceEncoder(folder, model_dir).encode(CHECK_TEXTS)
    return float(np.max(1.0 - np.sum(want * got, axis=1)))

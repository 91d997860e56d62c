"""One Settings object for the whole toolkit: defaults, then `rag.toml`, then `RAG_*` environment variables."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key in rag.toml is an error, not a silent default


class ChunkSettings(_Section):
    size: int = Field(200, ge=16, description="maximum tokens per chunk (cl100k_base)")
    overlap: int = Field(40, ge=0, description="maximum tokens shared by consecutive chunks")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkSettings:
        if self.overlap >= self.size:
            raise ValueError(f"chunk overlap ({self.overlap}) must be smaller than chunk size ({self.size})")
        return self


class IngestSettings(_Section):
    max_file_mb: float = Field(20.0, gt=0, description="files larger than this are skipped")
    prune: bool = Field(True, description="remove documents whose files left the folder")


class EmbedSettings(_Section):
    provider: Literal["local", "openai"] = "local"
    openai_model: str = "text-embedding-3-small"
    batch_size: int = Field(16, ge=1, description="texts per model call; small batches pad less on a CPU")
    onnx: bool = Field(True, description="local: embed with ONNX Runtime once the model is exported (by the first "
                       "torch load), so a fresh process does not load torch")
    timeout_s: float = Field(30.0, gt=0, description="openai: the most one embedding call may take, retries included")
    max_retries: int = Field(2, ge=0, description="openai: attempts after the first")


class RetrieveSettings(_Section):
    k: int = Field(8, ge=1, description="passages handed to the answer stage")
    candidates: int = Field(30, ge=1, description="hits taken from each retriever before fusion")
    rrf_k: int = 60
    mmr: bool = False
    mmr_lambda: float = 0.7


Backend = Literal["auto", "extractive", "openai"]
BACKENDS: tuple[str, ...] = get_args(Backend)
BACKENDS_HELP = ("auto (default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else extractive), "
                 "extractive (offline) or openai")


def resolve_backend(choice: str, environ: Mapping[str, str]) -> str:
    """"auto" answers with the model server the environment names (OPENAI_API_KEY, or OPENAI_BASE_URL for a local
    server) and offline without one; "extractive" and "openai" are taken as they are."""
    if choice != "auto":
        return choice
    return "openai" if environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL") else "extractive"


class AnswerSettings(_Section):
    backend: Backend = "auto"
    openai_model: str = "gpt-4o-mini"
    context_tokens: int = Field(3000, description="token budget for the passages in the prompt")
    max_sentences: int = Field(2, ge=1, description="most sentences in an answer")
    unsupported: Literal["flag", "drop"] = "flag"
    # How a chat model reads: "sentences" (numbered sentences in, JSON evidence ids out; falls back to "markers"
    # when the server takes no JSON reply format) or "markers" ([n] passage markers in prose).
    reader: Literal["sentences", "markers"] = "sentences"
    max_tokens: int | None = Field(None, ge=16, description="most tokens a model reply may take; unset: sized "
                                   "from max_sentences")
    timeout_s: float = Field(30.0, gt=0, description="the most one model call may take, retries included")
    max_retries: int = Field(2, ge=0)
    # Below this answerability (0-1) the extractive reader says the sources do not answer; unset: the bar fitted
    # with its weights by evals/fit_reader.py.
    min_confidence: float | None = Field(None, ge=0, le=1)

    @property
    def reply_tokens(self) -> int:
        """The max_tokens of every model call: a sentence of an answer with its evidence ids takes about 80."""
        return self.max_tokens or 80 * self.max_sentences + 60


class ServeSettings(_Section):
    """`rag serve`: who may call it and how much one request or the whole server may take."""

    token: SecretStr | None = Field(None, description="bearer token every /v1/ request must send; required to bind "
                                    "anything but loopback, and for /v1/ingest")
    max_concurrent: int = Field(16, ge=1, description="requests in flight; beyond it 503 with Retry-After")
    max_body_kb: int = Field(64, ge=1, description="largest request body, in KiB (413 beyond)")
    max_text_chars: int = Field(2000, ge=1, description="longest question, query or topic (413 beyond)")
    max_k: int = Field(50, ge=1, description="most passages one request may ask for")

    def bearer(self) -> str | None:
        """The token as clients send it, or None when none is set."""
        return self.token.get_secret_value() if self.token else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", toml_file=os.environ.get("RAG_CONFIG", "rag.toml"),
        extra="forbid", env_ignore_empty=True,  # RAG_HOME= (empty) is unset, not the current folder
    )

    home: Path = Path(".rag")
    chroma_url: str | None = None
    server_url: str | None = Field(None, description="`rag ask` asks the `rag serve` at this URL instead of "
                                   "loading the store")
    collection: str = "articles"
    chunk: ChunkSettings = ChunkSettings()
    ingest: IngestSettings = IngestSettings()
    embed: EmbedSettings = EmbedSettings()
    retrieve: RetrieveSettings = RetrieveSettings()
    answer: AnswerSettings = AnswerSettings()
    serve: ServeSettings = ServeSettings()

    def has_store(self) -> bool:
        """A Chroma server is named, or the home folder holds an embedded store."""
        return bool(self.chroma_url) or (self.home / "chroma").exists()

    @classmethod
    def load(cls) -> Settings:
        """Settings from rag.toml (or RAG_CONFIG) and RAG_* variables; ValueError with one line saying which
        setting is wrong and why."""
        named = os.environ.get("RAG_CONFIG")
        if named and not Path(named).is_file():
            raise ValueError(f"RAG_CONFIG names {named}, which is not a file")
        check_variables(os.environ)
        toml_file = Path(str(cls.model_config.get("toml_file")))
        if toml_file.exists() or toml_file.is_symlink():
            read_named_file(toml_file, "settings file")  # a folder, unreadable, not UTF-8: one line naming it
        try:
            return cls()
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "settings"
            env = "RAG_" + "__".join(str(part) for part in first["loc"]).upper()
            if first["type"] == "extra_forbidden":  # a misspelling: say which names there are
                nested = len(first["loc"]) > 1
                names = (type(cls.model_fields[str(first["loc"][0])].default) if nested else cls).model_fields
                raise ValueError(f"unknown setting {where} ({env} or {cls.model_config.get('toml_file')}); "
                                 f"known: {', '.join(names)}") from None
            field = cls.model_fields.get(str(first["loc"][0]))
            if len(first["loc"]) == 1 and field and isinstance(field.annotation, type) \
                    and issubclass(field.annotation, BaseModel):
                env += "__*"  # two settings of the section disagree: "overlap (50) must be smaller than size (40)"
            raise ValueError(f"bad setting {where} ({env} or {cls.model_config.get('toml_file')}): "
                             f"{first['msg'].removeprefix('Value error, ')}") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{cls.model_config.get('toml_file')}: not valid TOML ({e})") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


# RAG_ variables that are not settings but are read by name: the settings file, and a test's switch to keep its
# screenshot.
OTHER_VARIABLES = frozenset({"RAG_CONFIG", "RAG_KEEP_SCREENSHOT"})


def setting_variables() -> list[str]:
    """Every RAG_ variable that names a setting: RAG_HOME, RAG_CHUNK, RAG_CHUNK__SIZE, ..."""
    names = []
    for name, field in Settings.model_fields.items():
        names.append(f"RAG_{name.upper()}")
        if isinstance(field.default, BaseModel):
            names.extend(f"RAG_{name.upper()}__{sub.upper()}" for sub in type(field.default).model_fields)
    return names


def check_variables(environ: Mapping[str, str]) -> None:
    """A RAG_ variable that is no setting is a misspelling (RAG_CHROMAURL, RAG_RETREIVE__K, RAG_CHUNK_SIZE): an
    error naming the nearest setting, not a silent default. Misspelt keys of a known section are left to the
    settings' own check, which lists the section's keys; empty variables count as unset."""
    known = setting_variables()
    sections = {n for n in known if "__" not in n}
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith("RAG_") or not value or upper in OTHER_VARIABLES or upper in known:
            continue
        if "__" in upper and upper.split("__")[0] in sections:
            continue
        near = difflib.get_close_matches(upper, known + sorted(OTHER_VARIABLES), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else f"settings are {', '.join(sorted(sections))}"
        raise ValueError(f"unknown setting {name} (a RAG_ variable that is no setting): {hint}")


class UnreadableFile(ValueError):
    """A file the user named (gold set, baseline, response cache) that cannot be read as text."""


def read_named_file(path: Path, what: str) -> str:
    """The UTF-8 text of a file the user named, or UnreadableFile with one line saying what and where."""
    if not path.exists():
        raise UnreadableFile(f"{path}: no such {what}")
    if path.is_dir():
        raise UnreadableFile(f"{path}: a folder, not a {what}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnreadableFile(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UnreadableFile(f"{path}: cannot read the {what}: {e.strerror or e}") from None

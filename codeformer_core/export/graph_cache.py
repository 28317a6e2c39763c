"""The onnxruntime backend's graphs, exported once per checkpoint and kept in `<weights dir>/onnx/`.

A pair of files per checkpoint, `<stem>-<key>-encoder.onnx` and `-decoder.onnx`, where the key changes with the
checkpoint file (name, size, modification time) and with the export format: a replaced checkpoint or a newer
engine exports again, and the pair it replaces is deleted.
"""

import hashlib
from pathlib import Path

import onnx

from ..layouts import Task, task_adain
from .onnx_export import FORMAT_VERSION, OPSET, ExportedGraphs, export_checkpoint, save_model

CACHE_FOLDER = "onnx"
PARTS = ("encoder", "decoder")


def cache_dir(weights_dir: Path) -> Path:
    """Where the graphs of the checkpoints in `weights_dir` are kept."""
    return weights_dir / CACHE_FOLDER


def graph_paths(checkpoint: Path, cache_dir: Path) -> tuple[Path, Path]:
    """Where the encoder and decoder models of `checkpoint` are kept."""
    stat = checkpoint.stat()
    identity = f"{checkpoint.name}:{stat.st_size}:{stat.st_mtime_ns}:{FORMAT_VERSION}:{OPSET}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    encoder, decoder = (cache_dir / f"{checkpoint.stem}-{key}-{part}.onnx" for part in PARTS)
    return encoder, decoder


def ensure_graphs(task: Task, checkpoint: Path, cache_dir: Path) -> tuple[Path, Path]:
    """The paths of the encoder and decoder models of `checkpoint`, exported and written first if not there."""
    paths = graph_paths(checkpoint, cache_dir)
    if all(path.is_file() for path in paths):
        return paths
    graphs = export_checkpoint(task, checkpoint)
    for model, path in zip((graphs.encoder, graphs.decoder), paths, strict=True):
        save_model(model, path)
    for part, path in zip(PARTS, paths, strict=True):
        for older in cache_dir.glob(f"{checkpoint.stem}-*-{part}.onnx"):
            if older != path:
                older.unlink(missing_ok=True)
    return paths


def cached_graphs(task: Task, checkpoint: Path, cache_dir: Path) -> ExportedGraphs | None:
    """The models `ensure_graphs` wrote for `checkpoint`, read back, or None when they are not there."""
    paths = graph_paths(checkpoint, cache_dir)
    if not all(path.is_file() for path in paths):
        return None
    encoder, decoder = (onnx.load_model(path) for path in paths)
    return ExportedGraphs(task, task_adain(task), encoder, decoder)

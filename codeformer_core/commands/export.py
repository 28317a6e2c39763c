"""`python -m codeformer_core export onnx --task TASK -o FILE`: the task's network as one ONNX file with the
fidelity w as an input (see export/onnx_export.py for its inputs and outputs).

The checkpoint comes through the weight store like every other file (fetched if missing, fetched again if
corrupt); graphs the onnxruntime backend already exported for it are reused. Progress goes to stderr; stdout gets
one line: the file, its size, the opset, its inputs and outputs, and the task's official w and AdaIN setting.
Exit code 0 when the file is written, 1 otherwise (one line on stderr).
"""

import argparse
import sys
import time
from pathlib import Path

from ..export.backends import missing_packages
from ..layouts import TASKS
from ..settings import Settings
from ..weights.registry import CODEFORMER_FILES
from .download import tqdm_progress

FORMATS = ("onnx",)
WEIGHT_TYPES = ("float32", "float64")  # export.onnx_export.WEIGHT_TYPES, kept here so --help needs no onnx


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="the file format (onnx)")
    parser.add_argument("--task", choices=TASKS, default="restore", help="which network (default restore)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the file to write, e.g. codeformer.onnx")
    parser.add_argument("--weight-type", choices=WEIGHT_TYPES, default="float32",
                        help="element type of the `weight` input (default float32; facefusion feeds float64)")
    parser.add_argument("--weights-dir", type=Path,
                        help="where the checkpoint is looked up and downloaded (default: $CODEFORMER_WEIGHTS_DIR, "
                        "else ./weights)")


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    missing = [name for name in missing_packages() if name == "onnx"]
    if missing:
        print("error: export needs the onnx package: pip install -r requirements-onnx.txt", file=sys.stderr)
        return 1
    if args.output.is_dir():
        print(f"error: -o {args.output} is a folder; name the .onnx file to write.", file=sys.stderr)
        return 1
    from ..export.graph_cache import cache_dir, cached_graphs
    from ..export.onnx_export import (
        OFFICIAL_FIDELITY,
        OPSET,
        ExportedGraphs,
        export_checkpoint,
        input_summary,
        save_model,
    )
    from ..export.onnx_export import single_model as join

    store = settings.weight_store(args.weights_dir)
    started = time.perf_counter()

    def step(name: str) -> None:
        print(f"export: {name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    def graphs_of(checkpoint: Path) -> ExportedGraphs:
        cached = cached_graphs(args.task, checkpoint, cache_dir(store.weights_dir))
        if cached is not None:
            step(f"using the graphs the onnxruntime backend exported from {checkpoint.name}")
            return cached
        return export_checkpoint(args.task, checkpoint, step)

    progress, bars = tqdm_progress()
    try:
        graphs = store.load(CODEFORMER_FILES[args.task], graphs_of, progress)
    finally:
        for bar in bars.values():
            bar.close()
    step(f"joining the graphs and writing {args.output}")
    model = join(graphs, args.weight_type)
    try:
        size = save_model(model, args.output)
    except OSError as error:
        print(f"error: {args.output} could not be written ({error}).", file=sys.stderr)
        return 1
    print(
        f"{args.output}: {size / 2**20:.1f} MiB, ONNX opset {OPSET}, inputs {input_summary(model)}; outputs output, "
        f"logits; {args.task}: {OFFICIAL_FIDELITY[args.task]}, AdaIN {'on' if graphs.adain else 'off'}"
    )
    return 0

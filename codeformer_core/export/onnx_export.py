"""The CodeFormer network as ONNX models with the fidelity w as an input.

Two graphs come out of one export (`export_graphs`), split where `CodeFormer.encode` hands over to `decode`:

    encoder: input (N x 3 x 512 x 512, RGB in [-1, 1])
             -> logits (N x 256 x codebook), lq_feat, quant_feat (N x 256 x 16 x 16), skip_<r> (one per CFT block)
    decoder: quant_feat, skip_<r>..., weight ([1], w in [0, 1]) -> output (N x 3 x 512 x 512, not clamped)

The onnxruntime backend runs the two (a new w re-runs the decoder only); `single_model` joins them into the one
file other tools load (inputs `input` and `weight`, outputs `output` and `logits`, as facefusion's CodeFormer
model has them). w multiplies the CFT blocks' term inside the graph, which has no branch on it: w = 0 adds 0 * x.
AdaIN is fixed at export, as the task's network was trained (restore and colorize on, inpaint off).

Needs the `onnx` package (requirements-onnx.txt), imported here only.
"""

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx
import torch
from onnx import TensorProto, compose, helper

from ..files import hidden_sibling, write_atomically
from ..layouts import FACE_SIZE, FIXED_FIDELITY, TASKS, Task, task_adain
from ..network import CodeFormer
from ..network.codeformer import LATENT_CHANNELS, LATENT_SIZE, encoder_channels
from ..network.loading import load_network
from ..options import RestoreOptions
from .graphs import (
    FACES,
    LOGITS,
    OUTPUT,
    WEIGHT,
    DecoderGraph,
    EncoderGraph,
    decoder_inputs,
    encoder_outputs,
    use_staged_group_norms,
)

OPSET = 17
"""ONNX Runtime, OpenVINO and TensorRT 8.6+ all take opset 17."""
FORMAT_VERSION = "1"
"""Changes whenever the graphs do, so that models exported by an older version are exported again."""
BATCH = "faces"
LICENCE = (
    "CodeFormer weights: S-Lab License 1.0 (https://github.com/sczhou/CodeFormer/blob/master/LICENSE). "
    "This file carries them: non-commercial use only; it is not to be redistributed for commercial use."
)
OFFICIAL_FIDELITY = {
    task: f"w = {FIXED_FIDELITY[task]:g}"
    if task in FIXED_FIDELITY
    else f"any w in [0, 1] ({RestoreOptions.fidelity:g} by default)"
    for task in TASKS
}
"""The w each task's network is run at by the official scripts (and by this engine), as the models describe it."""

WeightType = Literal["float32", "float64"]
WEIGHT_TYPES: tuple[WeightType, ...] = ("float32", "float64")
_WEIGHT_ELEMENT_TYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}
Step = Callable[[str], None]
"""Told the name of each export step as it starts."""


@dataclass(frozen=True)
class ExportedGraphs:
    """The encoder and decoder models of one network (see the module docstring)."""

    task: Task
    adain: bool
    encoder: onnx.ModelProto
    decoder: onnx.ModelProto


def export_checkpoint(task: Task, checkpoint: Path, step: Step | None = None) -> ExportedGraphs:
    """The encoder and decoder models of the `task` network in `checkpoint`, with the task's official AdaIN."""
    if step is not None:
        step(f"loading {checkpoint.name}")
    return export_graphs(load_network(task, checkpoint), task_adain(task), step)


def export_graphs(net: CodeFormer, adain: bool, step: Step | None = None) -> ExportedGraphs:
    """Trace `net` (float32, CPU, plain torch modules: no CPU kernel swaps) into the encoder and decoder models.

    Its GroupNorms are swapped for staged ones first (see `StagedGroupNorm`): pass a network loaded for the export.
    Its time and memory are in bench/README.md.
    """
    step = step or (lambda _name: None)
    use_staged_group_norms(net)
    faces = torch.zeros(1, 3, FACE_SIZE, FACE_SIZE)
    quant_feat = torch.zeros(1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    skips = [torch.zeros(1, encoder_channels(res), res, res) for res in net.config.cft_resolutions]
    step("tracing the encoder")
    encoder = _traced(EncoderGraph(net, adain), (faces,), [FACES], encoder_outputs(net))
    # The exporter leaves the token count symbolic (it comes out of a reshape); the layout fixes it.
    _set_dims(encoder, LOGITS, (BATCH, LATENT_SIZE**2, net.quantize.codebook_size))
    step("tracing the decoder")
    decoder = _traced(DecoderGraph(net), (quant_feat, *skips, torch.zeros(1)), decoder_inputs(net), [OUTPUT])
    graphs = ExportedGraphs(net.task, adain, encoder, decoder)
    for model in (graphs.encoder, graphs.decoder):
        _describe(model, graphs)
    return graphs


def single_model(graphs: ExportedGraphs, weight_type: WeightType = "float32") -> onnx.ModelProto:
    """The encoder and decoder joined into one model: inputs `input` and `weight` (shape [1], `weight_type`),
    outputs `output` then `logits`. A float64 weight is what facefusion feeds; the graph casts it to float32."""
    links = [(name, name) for name in _input_names(graphs.decoder) if name != WEIGHT]
    # Both graphs come from one module, but the exporter numbers its constants per graph: names would collide.
    decoder = compose.add_prefix(graphs.decoder, "decoder/", rename_inputs=False, rename_outputs=False)
    model = compose.merge_models(graphs.encoder, decoder, io_map=links, outputs=[OUTPUT, LOGITS])
    outputs = {output.name: output for output in model.graph.output}
    model.graph.ClearField("output")
    model.graph.output.extend([outputs[OUTPUT], outputs[LOGITS]])  # tools take the first output as the face
    if weight_type != "float32":
        _cast_weight_input(model.graph, _WEIGHT_ELEMENT_TYPES[weight_type])
    _describe(model, graphs)
    return model


def save_model(model: onnx.ModelProto, path: Path) -> int:
    """Write `model` to `path` whole (no external data: it stays under protobuf's 2 GB), replacing any file there
    only once the new one is complete; returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, model.SerializeToString(), hidden_sibling(path, f"{os.getpid()}.partial"))
    return path.stat().st_size


def input_summary(model: onnx.ModelProto) -> str:
    """The model's inputs as `name type [dims]`, e.g. `input float32 [faces, 3, 512, 512]`."""
    return ", ".join(f"{value.name} {_type_text(value)}" for value in model.graph.input)


def _traced(
    graph: torch.nn.Module, example: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str]
) -> onnx.ModelProto:
    """`graph` through torch's TorchScript-based exporter (deprecated but kept in torch 2.x: its graphs are plain
    ONNX ops that every runtime takes, and it exports this network in seconds). Batch dimension dynamic except
    for `weight`."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and its constant-folding remarks
        torch.onnx.export(
            graph.eval(), example, buffer, dynamo=False, opset_version=OPSET, input_names=inputs,
            output_names=outputs, dynamic_axes={name: {0: BATCH} for name in inputs + outputs if name != WEIGHT},
        )
    return onnx.load_model_from_string(buffer.getvalue())


def _set_dims(model: onnx.ModelProto, output: str, dims: tuple[str | int, ...]) -> None:
    value = next(value for value in model.graph.output if value.name == output)
    shape = value.type.tensor_type.shape
    shape.ClearField("dim")
    for dim in dims:
        if isinstance(dim, str):
            shape.dim.add().dim_param = dim
        else:
            shape.dim.add().dim_value = dim


def _describe(model: onnx.ModelProto, graphs: ExportedGraphs) -> None:
    facts = {
        "task": graphs.task,
        "adain": str(graphs.adain).lower(),
        "fidelity": OFFICIAL_FIDELITY[graphs.task],
        "layout": "input: N x 3 x 512 x 512 float32 RGB in [-1, 1]; weight: [1], w in [0, 1]; "
        "output: N x 3 x 512 x 512 RGB in [-1, 1], clamp before use; logits: N x 256 x codebook",
        "license": LICENCE,
        "format_version": FORMAT_VERSION,
    }
    onnx.helper.set_model_props(model, facts)
    model.producer_name = "codeformer_core"
    model.doc_string = f"CodeFormer ({graphs.task}) with the fidelity w as an input. {LICENCE}"


def _cast_weight_input(graph: onnx.GraphProto, element_type: int) -> None:
    """Make the `weight` input `element_type` and cast it to float32 before its first use."""
    cast_name = f"{WEIGHT}_float32"
    for node in graph.node:
        node.input[:] = [cast_name if name == WEIGHT else name for name in node.input]
    weight = next(value for value in graph.input if value.name == WEIGHT)
    weight.type.tensor_type.elem_type = element_type
    graph.node.insert(0, helper.make_node("Cast", [WEIGHT], [cast_name], to=TensorProto.FLOAT, name="weight_cast"))


def _input_names(model: onnx.ModelProto) -> list[str]:
    return [value.name for value in model.graph.input]


def _type_text(value: onnx.ValueInfoProto) -> str:
    tensor = value.type.tensor_type
    dims = ", ".join(dim.dim_param or str(dim.dim_value) for dim in tensor.shape.dim)
    return f"{helper.tensor_dtype_to_np_dtype(tensor.elem_type)} [{dims}]"

"""The reference path, on the same device in the same run: the published architecture (spandrel-extra-arches'
port of the official codeformer_arch.py) in float32, one face at a time, as the official inference script runs it.

Per face the official script calls basicsr's img2tensor, normalises to [-1, 1], runs the network under no_grad,
converts back with basicsr's tensor2img, then calls torch.cuda.empty_cache(). basicsr is not on the GPU machine,
so `restore_face_as_official` does the same arithmetic with numpy and torch. facexlib (the official alignment and
paste-back) is not there either: the whole-photo rows have no reference path, and their targets are absolute.
The network is always the published width (spandrel fixes it), in the dry run too: the one full-size forward there.
"""

import itertools

import numpy as np
import torch
from torch import Tensor, nn

from .engine import published_state_dict, reference_arrays
from .golden import FEATURE_BOUND, OUTPUT_BOUND
from .plan import Context
from .report import Result
from .timing import peak_memory_mb, reset_peak_memory, series, time_once

FIDELITY = 0.5  # the official default w


def load_reference_network(device: torch.device) -> nn.Module:
    """spandrel's CodeFormer holding the golden restore weights (it loads them with strict=True), eval mode."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormerArch

    return CodeFormerArch().load(published_state_dict("restore")).model.eval().to(device)


def restore_face_as_official(
    net: nn.Module, face_bgr: np.ndarray, fidelity: float, device: torch.device
) -> tuple[np.ndarray, Tensor, Tensor]:
    """One 512 x 512 BGR uint8 face: (restored BGR uint8 face, raw output 1 x 3 x 512 x 512, logits), on `device`.

    The network is called with `weight=`: spandrel's forward names the fidelity so and swallows an official-style
    `w=` keyword (bench/README.md).
    """
    rgb = face_bgr[..., ::-1].astype(np.float32) / 255.0
    tensor = (torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))) - 0.5) / 0.5
    with torch.no_grad():
        output, logits = net(tensor.unsqueeze(0).to(device), weight=fidelity)
        unit = (output[0].float().cpu().clamp(-1, 1) + 1) / 2
        face = (unit.numpy().transpose(1, 2, 0)[..., ::-1] * 255.0).round().astype(np.uint8)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the official script's per-face call
    return face, output, logits


def run_reference(ctx: Context) -> None:
    ctx.deadline.require(30, "the reference network")
    net, load_seconds = time_once(lambda: load_reference_network(ctx.device), ctx.device)
    faces = itertools.cycle(ctx.faces(3))  # the golden restore input first
    first_call: list[tuple[np.ndarray, np.ndarray]] = []

    def one_face() -> None:
        _, output, logits = restore_face_as_official(net, next(faces), FIDELITY, ctx.device)
        if not first_call:
            first_call.append((output.cpu().numpy(), logits.cpu().numpy()))

    reset_peak_memory(ctx.device)
    timing = series(one_face, ctx.device, warmup=ctx.scale.warmup, repeats=ctx.scale.repeats,
                    deadline=ctx.deadline, what="the reference network")
    peak = peak_memory_mb(ctx.device)
    agreement = _golden_agreement(*first_call[0], tf32=ctx.on_gpu and torch.backends.cudnn.allow_tf32)
    ctx.reference_ms = timing.median_ms
    ctx.numbers["reference"] = {"load_s": load_seconds, "seconds": timing.seconds, "peak_gpu_mb": peak}
    memory = f"; peak GPU memory {peak:.0f} MiB" if peak is not None else ""
    ctx.results["latency/reference"] = Result(
        "", f"{timing.median_ms:.2f} ms", "", "info",
        f"median of {len(timing.seconds)} (spread {timing.spread:.0%}), w={FIDELITY}, uint8 face in and out, "
        f"empty_cache per face as the official script; loaded in {load_seconds:.1f} s{memory}; {agreement}")


def _golden_agreement(output: np.ndarray, logits: np.ndarray, *, tf32: bool) -> str:
    """The reference network's first call (the golden restore input) against the golden vectors, as a sentence.
    The README's bounds are exact float32's: with TF32 convolutions (torch's CUDA default) they may not hold."""
    golden = reference_arrays("restore")
    same_codes = bool((logits.argmax(-1)[0] == golden["idx"]).all())
    logits_gap = float(np.abs(logits - golden["logits"]).max())
    expected = golden[f"out_w{FIDELITY:g}"]
    output_gap = float(np.abs(output - expected).max() / np.abs(expected).max())
    within = same_codes and logits_gap <= FEATURE_BOUND and output_gap <= OUTPUT_BOUND
    precision = "TF32 convolutions, as timed" if tf32 else "float32"
    codes = "identical" if same_codes else "differ"
    return (f"golden vectors {'met' if within else 'NOT met'} ({precision}): idx {codes}, logits "
            f"{logits_gap:.1e}, output {output_gap:.1e} x max\\|ref\\|")

"""Where a GPU's time goes in the network and the whole-photo pipeline, and what the candidate speed-ups buy.

    python -m bench.gpu_profile [--dry-run]

A diagnosis, not the check (bench/gpu_check.sh is that): it prints
- the whole photo's stages with the device synchronised at each stage's edges (the pipeline's own stage clocks
  do not wait for the GPU, so a stage there also pays for the queued work of the one before);
- the network per face in float32 and fp16 variants, with each one's drift from exact float32 (on CUDA also
  bf16, and the Triton GroupNorm kernels in both layouts);
- the CUDA kernels that take the most time in one fp16 batch, the engine's and with the Triton kernels.
"""

import argparse
import contextlib
import copy
import json
import os
import statistics
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.gpu_check.engine import (
    CodeFormer,
    ControllableFeatureTransform,
    RestoreOptions,
    StageClock,
    Upsample,
    crops_to_tensor,
    faces_from_report,
    filled_network,
    narrow_networks,
    offline_pipeline,
    read_image,
    reduced_precision,
    triton_network,
    triton_norms_problem,
    use_cast_once_weights,
    use_golden_dir,
    write_pipeline_weights,
)
from bench.gpu_check.photo import image_variant
from bench.gpu_check.plan import DEFAULT_CARRY, FACES_FILE, Inputs
from bench.gpu_check.timing import synchronize, time_once

FIDELITY = 0.5


def median_ms(work: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The median of `repeats` timed calls, after one untimed call unless a single call is asked for (dry run)."""
    if repeats > 1:
        work()
    return 1000 * statistics.median(time_once(work, device)[1] for _ in range(repeats))


@contextlib.contextmanager
def synchronised_stages(device: torch.device) -> Iterator[None]:
    """Every pipeline stage's clock waits for the device at both ends while the block runs."""
    original = StageClock.stage

    @contextlib.contextmanager
    def stage(self: StageClock, name: str, message: str) -> Iterator[None]:
        synchronize(device)
        with original(self, name, message):
            yield
            synchronize(device)

    StageClock.stage = stage
    try:
        yield
    finally:
        StageClock.stage = original


def whole_photo(args: argparse.Namespace, device: torch.device, report: dict) -> None:
    inputs = Inputs.find(DEFAULT_CARRY)
    image = read_image(inputs.photo)
    faces = faces_from_report(json.loads(FACES_FILE.read_text())["faces"], str(FACES_FILE))
    if args.dry_run:
        faces = faces[:1]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = offline_pipeline(write_pipeline_weights(Path(tmp)), device)
        for fast in (True,) if args.dry_run else (True, False):
            options = RestoreOptions(fidelity=FIDELITY, upscale=2, background="none", fast=fast)
            rows = []
            for index in range(1 if args.dry_run else 4):
                variant = image_variant(image, index + 1)
                with synchronised_stages(device):
                    first, first_s = time_once(partial(pipeline.run, variant, options, faces=faces), device)
                    again, again_s = time_once(
                        partial(pipeline.run, variant, replace(options, fidelity=0.8), faces=faces), device)
                rows.append((first_s, again_s, first.report.timings, again.report.timings))
            total, total_again, stages, stages_again = rows[-1]
            mode = "fast" if fast else "float32"
            print(f"whole photo {mode}, {len(faces)} faces, synchronised: first {1000 * total:.1f} ms "
                  f"(median {1000 * statistics.median(r[0] for r in rows):.1f}), again {1000 * total_again:.1f} ms")
            print("  stages:", {k: round(1000 * v, 1) for k, v in stages.items()})
            print("  again: ", {k: round(1000 * v, 1) for k, v in stages_again.items()})
            report[f"photo/{mode}"] = {"first_ms": 1000 * total, "again_ms": 1000 * total_again,
                                       "stages": stages, "stages_again": stages_again}
        parser = pipeline.models.parser()
        crops = inputs.aligned_faces()[:1] if args.dry_run else inputs.aligned_faces() * 2
        repeats = 1 if args.dry_run else 5
        labels_ms = median_ms(partial(parser.face_labels, crops), device, repeats)
        masks_ms = median_ms(partial(parser.paste_masks, crops), device, repeats)
        print(f"parser: {len(crops)} faces: labels (ParseNet, argmax, to host) {labels_ms:.1f} ms; labels and soft "
              f"masks {masks_ms:.1f} ms; torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
        report["parser"] = {"faces": len(crops), "labels_ms": labels_ms, "paste_masks_ms": masks_ms}


def network_variants(args: argparse.Namespace, device: torch.device, report: dict) -> None:
    base = filled_network("restore", device).eval()
    engine = copy.deepcopy(base)
    use_cast_once_weights(engine)  # as the pipeline tunes it on CUDA
    faces = Inputs.find(DEFAULT_CARRY).aligned_faces()
    batches = (2,) if args.dry_run else (1, 4, 16)
    repeats = 1 if args.dry_run else 8
    fast = reduced_precision(device)  # float32 on a CPU without native bf16: the dry run then only runs the code
    variants = {
        "float32 (engine: TF32 off)": (engine, "float32"),
        f"{fast} (engine: NCHW, norms at {fast}, weights cast once)": (engine, fast),
        f"{fast}, weights cast by autocast every pass": (base, fast),
        f"{fast}, the engine of 2026-11-27": (engine_of_2026_11_27(copy.deepcopy(base)), fast),
        f"{fast}, norms in float32 (autocast's rule)": (float32_norms(copy.deepcopy(base)), fast),
        f"{fast}, channels_last decoder": (copy.deepcopy(base).use_channels_last(), fast),
    }
    profiled = {f"engine, {fast}": engine}
    if device.type == "cuda":
        variants["bf16 (engine's code, bf16)"] = (engine, "bf16")
        if triton_norms_problem() is None:
            triton_nchw = triton_network(engine, channels_last=False)
            triton_channels_last = triton_network(engine, channels_last=True)
            variants[f"{fast}, Triton GroupNorm kernels (NCHW)"] = (triton_nchw, fast)
            variants[f"{fast}, Triton GroupNorm kernels, channels_last decoder"] = (triton_channels_last, fast)
            profiled[f"Triton GroupNorm kernels, channels_last decoder, {fast}"] = triton_channels_last
    x_all = crops_to_tensor([faces[i % len(faces)] for i in range(max(batches))], device)
    exact = base.encode(x_all[:4])
    exact_out = base.decode(exact, FIDELITY)
    for name, (net, precision) in variants.items():
        encoded = net.encode(x_all[:4], precision=precision)
        out = net.decode(encoded, FIDELITY, precision=precision)
        codes = float((encoded.idx != exact.idx).float().mean())
        drift = float((out - exact_out).abs().max() / exact_out.abs().max())
        mean_px = float(((out - exact_out).abs() * 127.5).mean())
        times = {batch: median_ms(partial(_forward, net, x_all[:batch], precision), device, repeats) / batch
                 for batch in batches}
        decode_ms = median_ms(partial(net.decode, encoded, FIDELITY, precision=precision), device, repeats) / 4
        print(f"{name:58s} per face " + ", ".join(f"b{b} {t:6.2f} ms" for b, t in times.items())
              + f"; decode only b4 {decode_ms:.2f} ms; codes changed {codes:.2%}, out drift {drift:.1e} x max, "
                f"mean {mean_px:.2f} px")
        report[f"net/{name}"] = {"per_face_ms": times, "decode_b4_ms": decode_ms, "codes": codes, "drift": drift}
    if device.type == "cuda":
        for name, net in profiled.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                net.decode(net.encode(x_all[:4], precision=fast), FIDELITY, precision=fast)
                synchronize(device)
            print(f"--- top kernels, {name}, batch 4")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=90))


def _forward(net: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    return net.decode(net.encode(x, precision=precision), FIDELITY, precision=precision)


def engine_of_2026_11_27(net: CodeFormer) -> CodeFormer:
    """The network as the engine ran it in the H100 run of 2026-11-27: weights cast by autocast on every pass (the
    caller passes one without kept casts), upsampling in autocast's float32, and the CFT blocks' input promoted to
    float32 by cat."""
    for module in net.modules():
        if isinstance(module, Upsample):
            module.forward = partial(_upsample_in_float32, module)
        elif isinstance(module, ControllableFeatureTransform):
            module.forward = partial(_fuse_in_float32, module)
    return net


def _upsample_in_float32(module: Upsample, x: torch.Tensor) -> torch.Tensor:
    return module.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _fuse_in_float32(module: ControllableFeatureTransform, enc_feat: torch.Tensor, dec_feat: torch.Tensor,
                     w: float) -> torch.Tensor:
    fused = module.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
    return dec_feat + w * (dec_feat * module.scale(fused) + module.shift(fused))


def float32_norms(net: nn.Module) -> nn.Module:
    """The network with plain GroupNorms: under autocast they run in float32, in and out."""
    for module in net.modules():
        if isinstance(module, nn.GroupNorm):
            module.forward = nn.GroupNorm.forward.__get__(module)
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None)
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry_run else "cuda")
    if args.dry_run:
        narrow_networks(32)
    use_golden_dir(Inputs.find(DEFAULT_CARRY).golden_dir)
    report: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    for section in (whole_photo, network_variants):
        try:
            section(args, device, report)
        except Exception as error:  # noqa: BLE001 -- a diagnosis goes on: the next section may still tell something
            traceback.print_exc()
            report[section.__name__] = f"{type(error).__name__}: {error}"
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_profile.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Where a GPU's time goes in the network and the whole-photo pipeline, and what the candidate speed-ups buy.

    python -m bench.gpu_profile [--dry-run]

A diagnosis, not the check (bench/gpu_check.sh is that): it prints
- the whole photo's stages with the device synchronised at each stage's edges (the pipeline's own stage clocks
  do not wait for the GPU, so a stage there also pays for the queued work of the one before);
- ParseNet per face at one face per pass and at four, in float32 and fast mode's precision, with the mask drift;
- the encoder (and transformer) per face in exact float32 variants, each with the code indices it changed: the
  engine's, a channels_last encoder, cudnn.benchmark, and TF32 convolutions (not exact, for scale);
- the decoder per face at fast mode's precision and its variants (on CUDA fp16, and the Triton GroupNorm kernels
  with a channels_last decoder), each with its drift from exact float32;
- the CUDA kernels that take the most time in one fast-mode pass of four faces.
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

import numpy as np
import torch

from bench.gpu_check.engine import (
    CodeFormer,
    RestoreOptions,
    RestoreRequest,
    StageClock,
    computing_at,
    crops_to_tensor,
    faces_from_report,
    filled_network,
    narrow_networks,
    offline_pipeline,
    precision_module,
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
from bench.gpu_check.timing import swapped, synchronize, time_once

FIDELITY = 0.5


def median_ms(work: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The median of `repeats` timed calls, after one untimed call unless a single call is asked for (dry run)."""
    if repeats > 1:
        work()
    return 1000 * statistics.median(time_once(work, device)[1] for _ in range(repeats))


def synchronised_stages(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Every pipeline stage's clock waits for the device at both ends while the block runs."""
    original = StageClock.stage

    @contextlib.contextmanager
    def stage(self: StageClock, name: str, message: str) -> Iterator[None]:
        synchronize(device)
        with original(self, name, message):
            yield
            synchronize(device)

    return swapped(StageClock, "stage", stage)


def whole_photo(args: argparse.Namespace, device: torch.device, report: dict) -> None:
    inputs = Inputs.find(DEFAULT_CARRY)
    image = read_image(inputs.photo)
    faces = faces_from_report(json.loads(FACES_FILE.read_text())["faces"], str(FACES_FILE))
    if args.dry_run:
        faces = faces[:1]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = offline_pipeline(write_pipeline_weights(Path(tmp)), device)
        for fast in (True,) if args.dry_run else (True, False):
            options = RestoreOptions(fidelity=FIDELITY, upscale=2, background="none", exact=not fast)
            rows = []
            for index in range(1 if args.dry_run else 4):
                variant = image_variant(image, index + 1)
                with synchronised_stages(device):
                    request = RestoreRequest(variant, options, faces=faces)
                    first, first_s = time_once(partial(pipeline.run, request), device)
                    again_request = replace(request, options=replace(options, fidelity=0.8))
                    again, again_s = time_once(partial(pipeline.run, again_request), device)
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
        crops = inputs.aligned_faces()[:1] if args.dry_run else (inputs.aligned_faces() * 2)[:4]
        repeats = 1 if args.dry_run else 5
        fast = reduced_precision(device)
        exact_masks = parser.paste_masks(crops)
        for batch in dict.fromkeys((1, len(crops))):
            parser.max_batch = batch
            for precision in dict.fromkeys(("float32", fast)):
                masks_ms = median_ms(partial(parser.paste_masks, crops, precision), device, repeats) / len(crops)
                drift = float(np.abs(parser.paste_masks(crops, precision) - exact_masks).max())
                print(f"parser: {batch} face(s) per pass, {precision}: {masks_ms:.2f} ms per face (labels and soft "
                      f"masks); mask max difference from float32 {drift:.3f}")
                report[f"parser/b{batch}/{precision}"] = {"per_face_ms": masks_ms, "mask_drift": drift}


def network_variants(args: argparse.Namespace, device: torch.device, report: dict) -> None:
    base = filled_network("restore", device).eval()
    engine = copy.deepcopy(base)
    use_cast_once_weights(engine)  # as the pipeline tunes it on CUDA
    faces = Inputs.find(DEFAULT_CARRY).aligned_faces()
    batches = (1,) if args.dry_run else (1, 4, 16)
    repeats = 1 if args.dry_run else 8
    fast = reduced_precision(device)  # float32 on a CPU without native bf16: the dry run then only runs the code
    x_all = crops_to_tensor([faces[i % len(faces)] for i in range(max(batches))], device)
    exact = base.encode(x_all[:4])
    exact_out = base.decode(exact, FIDELITY)
    channels_last = copy.deepcopy(engine)
    channels_last.encoder.to(memory_format=torch.channels_last)
    encoders = {
        "float32 (engine: NCHW, TF32 off)": (engine, False, contextlib.nullcontext),
        "float32, channels_last encoder": (channels_last, True, contextlib.nullcontext),
        "float32, cudnn.benchmark": (engine, False, partial(swapped, torch.backends.cudnn, "benchmark", True)),
    }
    if device.type == "cuda":
        encoders["TF32 convolutions (not exact)"] = (engine, False, _tf32_convolutions)
    for name, (net, last, setting) in encoders.items():
        with setting():
            idx = _codes(net, x_all[:4], last)
            times = {batch: median_ms(partial(_codes, net, x_all[:batch], last), device, repeats) / batch
                     for batch in batches}
        codes = float((idx != exact.idx).float().mean())
        print(f"encoder {name:48s} per face " + ", ".join(f"b{b} {t:6.2f} ms" for b, t in times.items())
              + f"; codes changed {codes:.2%}")
        report[f"encoder/{name}"] = {"per_face_ms": times, "codes": codes}
    decoders = {f"{fast} (engine: NCHW, norms at {fast}, weights cast once)": (engine, fast),
                "float32 (exact)": (engine, "float32")}
    profiled = {f"engine, {fast}": engine}
    if device.type == "cuda":
        decoders["fp16 (engine's code)"] = (engine, "fp16")
        decoders[f"{fast}, channels_last decoder"] = (copy.deepcopy(engine).use_channels_last(), fast)
        if triton_norms_problem() is None:
            triton_channels_last = triton_network(engine, channels_last=True)
            decoders[f"{fast}, Triton GroupNorm kernels, channels_last decoder"] = (triton_channels_last, fast)
            profiled[f"Triton GroupNorm kernels, channels_last decoder, {fast}"] = triton_channels_last
    for name, (net, precision) in decoders.items():
        encoded = {batch: net.encode(x_all[:batch]) for batch in batches}
        out = net.decode(net.encode(x_all[:4]), FIDELITY, precision=precision)
        drift = float((out - exact_out).abs().max() / exact_out.abs().max())
        mean_px = float(((out - exact_out).abs() * 127.5).mean())
        times = {batch: median_ms(partial(net.decode, encoded[batch], FIDELITY, precision=precision), device,
                                  repeats) / batch for batch in batches}
        print(f"decoder {name:58s} per face " + ", ".join(f"b{b} {t:6.2f} ms" for b, t in times.items())
              + f"; out drift {drift:.1e} x max, mean {mean_px:.2f} px")
        report[f"decoder/{name}"] = {"per_face_ms": times, "drift": drift, "mean_px": mean_px}
    if device.type == "cuda":
        for name, net in profiled.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                net.decode(net.encode(x_all[:4]), FIDELITY, precision=fast)
                synchronize(device)
            print(f"--- top kernels, {name}, batch 4")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=90))


def _codes(net: CodeFormer, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The code indices of faces `x`: the encoder and transformer in float32, as the engine runs them, on
    channels_last input when `channels_last`."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), computing_at("float32", x.device):
        lq_feat, _ = net.encoder(x, net.config.cft_resolutions)
        return net.predict_logits(lq_feat).argmax(dim=2)


@contextlib.contextmanager
def _tf32_convolutions() -> Iterator[None]:
    """cuDNN's TF32 convolutions even inside the engine's float32 (which turns them off)."""
    with (swapped(torch.backends.cudnn, "allow_tf32", True),
          swapped(precision_module, "exact_cuda_convolutions", contextlib.nullcontext)):
        yield


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

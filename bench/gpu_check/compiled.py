"""torch.compile(mode="reduce-overhead") of the network's encoder and generator, timed against eager, in a process
of its own: the parent kills it at its time box, which a compile inside the parent could not be.

    python -m bench.gpu_check.compiled --batch 4 --warmup 3 --repeats 10 --out compiled.json

Writes {"eager_ms", "compiled_ms" (per batch), "compile_s" (the first compiled call), "gap" (output difference
over max |eager output|), "drift" (eager's and the compiled network's codes changed and mean uint8 pixel error
against exact float32: a gap between two fp16 runs that flip different codes says little by itself)}. CUDA only;
the network is in the pipeline's layout on CUDA (the default one), fast mode.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .engine import crops_to_tensor, filled_network, reduced_precision, tensor_to_crops
from .plan import DEFAULT_CARRY, Inputs
from .speed import FIDELITY
from .timing import Deadline, series, time_once

TIME_BOX_S = 600.0  # the parent's timeout is the real bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device("cuda")
    net = filled_network("restore", device)
    faces = Inputs.find(DEFAULT_CARRY).aligned_faces()
    x = crops_to_tensor([faces[index % len(faces)] for index in range(args.batch)], device)
    precision = reduced_precision(device)

    def run(at: str) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = net.encode(x, precision=at)
        return encoded.idx.clone(), net.decode(encoded, FIDELITY, precision=at).clone()

    def forward() -> torch.Tensor:
        return run(precision)[1]

    exact = run("float32")
    deadline = Deadline(TIME_BOX_S)
    timing = dict(warmup=args.warmup, repeats=args.repeats, deadline=deadline)
    eager = series(forward, device, what="eager", **timing)
    eager_run = run(precision)
    net.encoder = torch.compile(net.encoder, mode="reduce-overhead")
    net.generator = torch.compile(net.generator, mode="reduce-overhead")
    _, compile_seconds = time_once(forward, device)
    compiled = series(forward, device, what="compiled", **timing)
    compiled_run = run(precision)
    expected = eager_run[1]
    gap = float((compiled_run[1] - expected).abs().max() / expected.abs().max())
    args.out.write_text(json.dumps({
        "eager_ms": eager.median_ms, "compiled_ms": compiled.median_ms, "compile_s": compile_seconds, "gap": gap,
        "eager_s": eager.seconds, "compiled_s": compiled.seconds,
        "drift": {"eager": drift(eager_run, exact), "compiled": drift(compiled_run, exact)},
    }))


def drift(ours: tuple[torch.Tensor, torch.Tensor], exact: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Share of code indices changed and mean error in uint8 pixels (as the pipeline rounds them) against `exact`."""
    ours_px, exact_px = (np.stack(tensor_to_crops(output)).astype(np.int16) for output in (ours[1], exact[1]))
    return {"codes_changed": float((ours[0] != exact[0]).float().mean()),
            "mean_px": float(np.abs(ours_px - exact_px).mean())}


if __name__ == "__main__":
    main()

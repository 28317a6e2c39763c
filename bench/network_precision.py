"""Speed and drift of the CodeFormer network's execution options on this machine.

Runs the restore network, filled by the golden rule, on the golden input (replicated to --faces faces) in each
configuration, and prints per-face encode / decode times and how far each one drifts from the exact float32 run:
the share of code indices that change, the largest logit difference and the largest and mean output difference
(in [-1, 1] space; with the golden random weights outputs span about +-15, so compare with max |out|).

    .venv/bin/python -m bench.network_precision [--faces 2] [--repeats 2] [--threads N] [--no-bf16]
"""

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from codeformer_core.compat import cpu_has_native_bf16
from codeformer_core.network import CodeFormer, EncodedFaces, Precision, build_network
from codeformer_core.network.cpu_convolutions import use_fast_cpu_convolutions
from tests.support.golden import golden_input, golden_state_dict, reference_arrays

FIDELITY = 0.5
T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    name: str
    precision: Precision
    decoder_channels_last: bool
    encoder_channels_last: bool = False
    """Not a network option (the encoder's logits must stay exact): lets bf16 run where it is emulated."""
    fast_cpu_convolutions: bool = False
    """Winograd (NNPACK) and GEMM convolutions, what the pipeline runs on a CPU (on a network of its own: the swap
    is one-way)."""


VARIANTS = (
    Variant("float32", "float32", decoder_channels_last=False),
    Variant("float32, decoder ch_last", "float32", decoder_channels_last=True),
    Variant("float32, Winograd/GEMM convs", "float32", decoder_channels_last=False, fast_cpu_convolutions=True),
    Variant("bf16 autocast, all ch_last", "bf16", decoder_channels_last=True, encoder_channels_last=True),
    Variant("bf16 autocast", "bf16", decoder_channels_last=False),
)


def runnable(variant: Variant) -> bool:
    """Without native bf16, oneDNN's emulated bf16 convolution in the default layout takes minutes per layer."""
    return variant.precision != "bf16" or variant.encoder_channels_last or cpu_has_native_bf16()


@dataclass(frozen=True)
class Timing:
    """Per-face seconds: wall clock, and CPU time of this process (steadier when other jobs share the cores)."""

    wall: float
    cpu: float


@dataclass(frozen=True)
class Measurement:
    encode: Timing
    decode: Timing
    decode_w0: Timing
    encoded: EncodedFaces
    out: torch.Tensor


def best_time(repeats: int, faces: int, run: Callable[[], T]) -> tuple[Timing, T]:
    """(per-face timing of the fastest of `repeats` runs, result of the last run)."""
    best, result = Timing(float("inf"), float("inf")), None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        timing = Timing((time.perf_counter() - wall) / faces, (time.process_time() - cpu) / faces)
        best = min(best, timing, key=lambda t: t.wall)
    return best, result


def measure(net: CodeFormer, faces: torch.Tensor, variant: Variant, repeats: int) -> Measurement:
    net.use_channels_last(variant.decoder_channels_last)
    net.encoder.to(memory_format=torch.channels_last if variant.encoder_channels_last else torch.contiguous_format)
    n = faces.shape[0]
    encode, encoded = best_time(repeats, n, lambda: net.encode(faces, adain=True, precision=variant.precision))
    decode, out = best_time(repeats, n, lambda: net.decode(encoded, FIDELITY, precision=variant.precision))
    decode_w0, _ = best_time(repeats, n, lambda: net.decode(encoded, 0.0, precision=variant.precision))
    return Measurement(encode, decode, decode_w0, encoded, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=2, help="faces per batch (copies of the golden input)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per timing; the fastest is kept")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--no-bf16", action="store_true", help="time the float32 variants only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net = golden_network()
    faces = golden_input("restore").expand(args.faces, -1, -1, -1).contiguous()
    reference_out = torch.from_numpy(reference_arrays("restore")[f"out_w{FIDELITY:g}"])

    print(f"restore network, {args.faces} faces per batch, {args.threads} threads, best of {args.repeats}; "
          f"times per face; drift against our float32 run (w={FIDELITY})")
    header = (f"{'variant':<30}{'encode s (cpu)':>16}{'decode s (cpu)':>16}{'dec w=0 s (cpu)':>17}{'idx changed':>13}"
              f"{'max |logit d|':>15}{'max |out d|':>13}{'mean |out d|':>14}")
    print(header)
    print("-" * len(header), flush=True)
    exact = None
    fast_net = golden_network()
    if not use_fast_cpu_convolutions(fast_net):
        fast_net = None
    for variant in VARIANTS:
        if variant.fast_cpu_convolutions and fast_net is None:
            print(f"{variant.name:<30}skipped: no NNPACK in this torch build, or CODEFORMER_CPU_KERNELS=plain")
            continue
        if args.no_bf16 and variant.precision == "bf16":
            continue
        if not runnable(variant):
            print(f"{variant.name:<30}skipped: this CPU has no native bf16 (hours per run)")
            continue
        m = measure(fast_net if variant.fast_cpu_convolutions else net, faces, variant, args.repeats)
        if exact is None:
            exact = m
        changed = (m.encoded.idx != exact.encoded.idx).float().mean().item()
        logit_drift = (m.encoded.logits - exact.encoded.logits).abs().max().item()
        out_drift = (m.out - exact.out).abs()
        print(f"{variant.name:<30}{_seconds(m.encode):>16}{_seconds(m.decode):>16}{_seconds(m.decode_w0):>17}{changed:>13.1%}"
              f"{logit_drift:>15.2e}{out_drift.max().item():>13.2e}{out_drift.mean().item():>14.2e}", flush=True)
    golden_error = (exact.out[:1] - reference_out).abs().max().item()
    print(f"\nmax |out| = {exact.out.abs().max().item():.2f}; float32 vs the reference implementation's output: "
          f"max |out d| = {golden_error:.2e}")


def golden_network() -> CodeFormer:
    net = build_network("restore")
    net.load_state_dict(golden_state_dict("restore"), strict=True)
    return net


def _seconds(timing: Timing) -> str:
    return f"{timing.wall:.2f} ({timing.cpu:.2f})"


if __name__ == "__main__":
    main()

"""Speed and drift of the CodeFormer network's execution options on this machine.

Runs the restore network, filled by the golden rule, on the golden input (replicated to --faces faces) in each
configuration, and prints per-face encode / decode times and how far each one drifts from the exact float32 run:
the share of code indices that change and the largest output difference (in [-1, 1] space and in 8-bit levels).

    .venv/bin/python -m bench.network_precision [--faces 2] [--repeats 2] [--threads N]
"""

import argparse
import time
from dataclasses import dataclass

import torch

from codeformer_core.network import CodeFormer, EncodedFaces, Precision, build_network
from codeformer_core.network.precision import cpu_has_native_bf16
from tests.golden import golden_input, golden_state_dict, reference_arrays

FIDELITY = 0.5


@dataclass(frozen=True)
class Variant:
    name: str
    precision: Precision
    channels_last: bool


VARIANTS = (
    Variant("float32", "float32", channels_last=False),
    Variant("float32 channels_last", "float32", channels_last=True),
    Variant("bf16 autocast channels_last", "bf16", channels_last=True),
    Variant("bf16 autocast", "bf16", channels_last=False),
)


def runnable(variant: Variant) -> bool:
    """Without native bf16, oneDNN's emulated bf16 convolution in the default layout takes minutes per layer."""
    return variant.precision != "bf16" or variant.channels_last or cpu_has_native_bf16()


@dataclass(frozen=True)
class Measurement:
    encode_s: float
    decode_s: float
    decode_w0_s: float
    encoded: EncodedFaces
    out: torch.Tensor


def best_time(repeats: int, run):
    """(shortest wall time over `repeats` runs, result of the last run)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(net: CodeFormer, faces: torch.Tensor, variant: Variant, repeats: int) -> Measurement:
    net.use_channels_last(variant.channels_last)
    encode_s, encoded = best_time(repeats, lambda: net.encode(faces, adain=True, precision=variant.precision))
    decode_s, out = best_time(repeats, lambda: net.decode(encoded, FIDELITY, precision=variant.precision))
    decode_w0_s, _ = best_time(repeats, lambda: net.decode(encoded, 0.0, precision=variant.precision))
    n = faces.shape[0]
    return Measurement(encode_s / n, decode_s / n, decode_w0_s / n, encoded, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=2, help="faces per batch (copies of the golden input)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per timing; the fastest is kept")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net = build_network("restore")
    net.load_state_dict(golden_state_dict("restore"), strict=True)
    faces = golden_input("restore").expand(args.faces, -1, -1, -1).contiguous()
    reference_out = torch.from_numpy(reference_arrays("restore")[f"out_w{FIDELITY:g}"])

    print(f"restore network, {args.faces} faces per batch, {args.threads} threads, best of {args.repeats}; "
          f"times per face; drift against our float32 run (w={FIDELITY})")
    header = (f"{'variant':<30}{'encode s':>10}{'decode s':>10}{'dec w=0 s':>11}{'idx changed':>13}"
              f"{'max |logit d|':>15}{'max |out d|':>13}{'8-bit lvls':>12}")
    print(header)
    print("-" * len(header), flush=True)
    exact = None
    for variant in VARIANTS:
        if not runnable(variant):
            print(f"{variant.name:<30}skipped: this CPU has no native bf16 (hours per run)")
            continue
        m = measure(net, faces, variant, args.repeats)
        if exact is None:
            exact = m
        changed = (m.encoded.idx != exact.encoded.idx).float().mean().item()
        logit_drift = (m.encoded.logits - exact.encoded.logits).abs().max().item()
        out_drift = (m.out - exact.out).abs().max().item()
        print(f"{variant.name:<30}{m.encode_s:>10.2f}{m.decode_s:>10.2f}{m.decode_w0_s:>11.2f}{changed:>13.1%}"
              f"{logit_drift:>15.2e}{out_drift:>13.2e}{out_drift * 127.5:>12.1f}", flush=True)
    golden_error = (exact.out[:1] - reference_out).abs().max().item()
    print(f"\nfloat32 vs the reference implementation's output: max |out d| = {golden_error:.2e}")


if __name__ == "__main__":
    main()

"""How large the decoder's features grow with the fidelity w, against fp16's range.

Runs the restore network (golden-fill weights, the stand-ins the GPU check uses) on the golden input in exact
float32 and prints, per w, the largest |feature| each CFT block hands on and the largest anywhere in the decoder.
fp16 ends at 65,504: a decode whose features pass it overflows there (inf, then NaN) and the engine runs it again
at its fallback (`network/precision.py`). Whether the published weights come near it is not known here.

    PYTHONPATH=. .venv/bin/python -m bench.overflow_range [--fidelities 0 0.5 0.8 1] [--threads N]
"""

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from bench.gpu_check.engine import filled_network, golden_input

FP16_MAX = float(torch.finfo(torch.float16).max)
FIDELITIES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@contextmanager
def largest_outputs(modules: dict[str, nn.Module]) -> Iterator[dict[str, float]]:
    """The largest |output| of each named module over the calls made while the block runs."""
    largest: dict[str, float] = {}

    def recorder(name: str):
        def record(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            largest[name] = max(largest.get(name, 0.0), float(output.abs().max()))
        return record

    handles = [module.register_forward_hook(recorder(name)) for name, module in modules.items()]
    try:
        yield largest
    finally:
        for handle in handles:
            handle.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fidelities", type=float, nargs="+", default=FIDELITIES)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = filled_network("restore", torch.device("cpu"))
    encoded = net.encode(golden_input("restore"))
    blocks = {f"CFT {res}": net.fuse_convs_dict[str(res)] for res in net.config.cft_resolutions}
    everything = {name: module for name, module in net.generator.named_modules() if name}
    titles = [*blocks, "decoder, anywhere", "output"]
    print(f"Largest |feature| in float32 (golden-fill restore weights, golden input); fp16 ends at {FP16_MAX:,.0f}.")
    print()
    print("| w | " + " | ".join(titles) + " | within fp16 |")
    print("|---" * (len(titles) + 2) + "|")
    for w in args.fidelities:
        with largest_outputs({**blocks, **everything}) as largest:
            output = net.decode(encoded, w)
        anywhere = max((value for name, value in largest.items() if name in everything), default=0.0)
        cells = [largest.get(name, 0.0) for name in blocks] + [anywhere, float(output.abs().max())]
        within = "yes" if max(cells) < FP16_MAX else "no"
        print(f"| {w:g} | " + " | ".join(f"{cell:,.0f}" if cell else "-" for cell in cells) + f" | {within} |")


if __name__ == "__main__":
    main()

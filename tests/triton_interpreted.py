"""The Triton GroupNorm kernels run by Triton's interpreter on the CPU, in a process of their own:

    python -m tests.triton_interpreted      prints the measurements as JSON (test_triton_group_norm.py reads them)

The interpreter is chosen when a kernel is defined, from TRITON_INTERPRET, so it must be set before the engine's
Triton module is imported; a process of its own keeps that away from the other tests.
"""

import json
import os

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402 - after TRITON_INTERPRET, as every import below
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

from bench.gpu_check.candidates import triton_group_norm  # noqa: E402
from bench.gpu_check.candidates.triton_group_norm import group_norm, use_triton_group_norms  # noqa: E402
from codeformer_core.network.vqgan import GROUPS, NORM_EPS, ResBlock  # noqa: E402

_patch_lang_tensor = interpreter._patch_lang_tensor


def _patch_lang_tensor_for_numpy_2(tensor: object, scope: interpreter._LangPatchScope) -> None:
    """Triton 3.6's interpreter turns a scalar (a one-element array) into a loop bound with int(array), which
    NumPy 2 refuses for arrays of one dimension."""
    _patch_lang_tensor(tensor, scope)
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))


interpreter._patch_lang_tensor = _patch_lang_tensor_for_numpy_2

SHAPES = ((3, 64, 7, 9), (2, 128, 16, 16), (1, 64, 40, 33))
"""Faces x channels x height x width: positions that fill no block or tile evenly, and one row split in several
programs."""
DTYPES = {"float32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def kernel_errors() -> list[dict]:
    """Each layout, dtype, shape and swish: the kernels' largest error from float64 GroupNorm, beside torch's
    float32 GroupNorm's and the dtype's spacing at the reference's largest value (one unit in the last place)."""
    generator = torch.Generator().manual_seed(0)
    cases = []
    for shape in SHAPES:
        # A large mean next to a small spread: what a variance from E[x^2] - E[x]^2 would lose.
        x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + 40
        weight = torch.randn(shape[1], generator=generator)
        bias = torch.randn(shape[1], generator=generator)
        for name, dtype in DTYPES.items():
            for layout in (torch.contiguous_format, torch.channels_last):
                features = x.to(dtype).contiguous(memory_format=layout)
                for swish in (False, True):
                    expected = F.group_norm(features.double(), GROUPS, weight.double(), bias.double(), NORM_EPS)
                    expected = F.silu(expected) if swish else expected
                    got = group_norm(features, GROUPS, weight, bias, NORM_EPS, swish=swish)
                    native = F.group_norm(features.float(), GROUPS, weight, bias, NORM_EPS)
                    native = F.silu(native) if swish else native
                    largest = float(expected.abs().max())
                    cases.append({
                        "shape": list(shape), "dtype": name, "channels_last": layout == torch.channels_last,
                        "swish": swish, "error": float((got.double() - expected).abs().max()),
                        "float32_native_error": float((native.double() - expected).abs().max()),
                        "largest": largest, "ulp": largest * torch.finfo(dtype).eps, "same_dtype": got.dtype == dtype,
                        "same_layout": got.is_contiguous(memory_format=layout),
                    })
    return cases


def resblock_outputs() -> dict:
    """A ResBlock with its norms swapped, against the same block unswapped: on bf16 features under bf16 autocast
    (where the kernels run, as in the network's reduced-precision passes) and in float32 (torch's GroupNorm)."""
    torch.manual_seed(0)
    block = ResBlock(64, 128).eval()
    swapped = ResBlock(64, 128).eval()
    swapped.load_state_dict(block.state_dict())
    swaps = use_triton_group_norms(swapped)
    calls = {"plain": 0, "with swish": 0}

    def counted(*args: object, swish: bool = False) -> torch.Tensor:
        calls["with swish" if swish else "plain"] += 1
        return group_norm(*args, swish=swish)

    triton_group_norm.group_norm = counted
    x = torch.randn(2, 64, 12, 12)
    with torch.inference_mode():
        exact = block(x)
        same_float32 = torch.equal(swapped(x), exact)
        float32_calls = dict(calls)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            native = block(x.bfloat16()).float()
            triton_out = swapped(x.bfloat16()).float()
    return {
        "swaps": swaps,
        "norm_types": sorted({type(norm).__name__ for norm in swapped.modules() if isinstance(norm, nn.GroupNorm)}),
        "float32_identical": same_float32,
        "float32_kernel_calls": float32_calls,
        "bf16_kernel_calls": calls,
        "bf16_native_error": float((native - exact).abs().max()),
        "bf16_triton_error": float((triton_out - exact).abs().max()),
    }


if __name__ == "__main__":
    print(json.dumps({"kernels": kernel_errors(), "resblock": resblock_outputs()}))

"""Convolution and linear weights cast to autocast's reduced precision once, instead of on every pass.

Why: under `torch.autocast` each convolution and linear layer casts its float32 weight and bias to the reduced
precision every time it runs, some 500 small cast kernels per CodeFormer pass on a GPU, each launched from the
host; and there the network's low-resolution stages are bound by launches, not by arithmetic (bench/README.md,
`gpu_profile.py`). A cast kept from the first pass gives the very same numbers, since autocast's own cast is the same
`Tensor.to`, for half a float32 copy of the weights in memory per reduced precision used.

Convolutions and linear layers are torch's own classes, so the pipeline swaps them on CUDA
(`use_cast_once_weights`); the engine's own layers that cast parameters under autocast (GroupNorm's affine, the
attention's input projection) keep their casts through `reduced_parameters` on every device. Kept only in inference
mode, where the engine runs its networks (a kept cast could not take gradients), and not while torch.compile
traces (Inductor plans its own casts).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .swapping import swap_modules


def autocast_parameters(owner: nn.Module, x: Tensor, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """`tensors` for `owner`'s computation on `x`: as they are outside autocast, and under it already in autocast's
    reduced precision (`reduced_parameters`), so that autocast has nothing left to cast."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    return reduced_parameters(owner, torch.get_autocast_dtype(device), *tensors)


def reduced_parameters(owner: nn.Module, dtype: torch.dtype, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """`tensors` (parameters of `owner`, None for a missing bias) in `dtype`.

    In inference mode they are cast at the first call, then kept on `owner` and cast again only when one of them
    has changed (in place, which bumps its version, or replaced, which moves its storage). With autograd on, or
    while torch.compile traces, they are cast on each call, as autocast would.
    """
    if torch.compiler.is_compiling() or not torch.is_inference_mode_enabled():  # the first is a constant to Dynamo
        return tuple(None if t is None else t.to(dtype) for t in tensors)
    stamp = tuple(None if t is None else (t._version, t.data_ptr()) for t in tensors)
    kept = owner.__dict__.setdefault("reduced_casts", {})
    if dtype not in kept or kept[dtype][0] != stamp:
        kept[dtype] = (stamp, tuple(None if t is None else t.to(dtype) for t in tensors))
    return kept[dtype][1]


class _KeepsReducedCasts(nn.Module):
    """A torch layer with `weight` and `bias` whose forward is `compute(x, weight, bias)`, given kept casts under
    autocast."""

    weight: Tensor
    bias: Tensor | None

    def compute(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.compute(x, *autocast_parameters(self, x, self.weight, self.bias))


class CastOnceConv2d(_KeepsReducedCasts, nn.Conv2d):
    """An nn.Conv2d (same parameters, same state_dict keys) that keeps its weights' reduced-precision cast."""

    def compute(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._conv_forward(x, weight, bias)


class CastOnceLinear(_KeepsReducedCasts, nn.Linear):
    """An nn.Linear (same parameters, same state_dict keys) that keeps its weights' reduced-precision cast."""

    def compute(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)


def use_cast_once_weights(net: nn.Module) -> int:
    """Swap, in place, every plain nn.Conv2d and nn.Linear inside `net` for one that keeps its reduced-precision
    cast; returns how many were swapped. Outside autocast they compute exactly what they did."""

    def make(layer: nn.Module) -> nn.Module:
        if isinstance(layer, nn.Conv2d):
            return CastOnceConv2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None,
                padding_mode=layer.padding_mode)
        return CastOnceLinear(layer.in_features, layer.out_features, bias=layer.bias is not None)

    return swap_modules(net, lambda layer: type(layer) in (nn.Conv2d, nn.Linear), make)

"""Fast mode's weights cast once (network/reduced_weights.py): autocast's numbers, without autocast's casts."""

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from codeformer_core.network.codeformer import network_skeleton
from codeformer_core.network.reduced_weights import CastOnceConv2d, CastOnceLinear, use_cast_once_weights
from codeformer_core.network.transformer import TransformerSALayer
from codeformer_core.network.vqgan import ResBlock
from codeformer_core.pipeline.models import Models


class _Casts(TorchDispatchMode):
    """Counts the dtype casts dispatched while it is active (in inference mode torch dispatches `to` itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.to, torch.ops.aten._to_copy):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(ResBlock(32, 64), nn.Flatten(2), nn.Linear(64, 16)).eval()


def _kept_copy(net: nn.Module) -> nn.Module:
    kept = copy.deepcopy(net)
    assert use_cast_once_weights(kept) == 4  # conv1, conv2, the 1x1 shortcut, the linear layer
    return kept


def _run_bf16(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), _Casts() as casts:
        out = net(x)
    return out, casts.count


def test_kept_casts_give_autocasts_numbers_bit_for_bit_and_are_made_once() -> None:
    plain = _layers()
    kept = _kept_copy(plain)
    x = torch.randn(2, 32, 8, 8)
    _run_bf16(plain, x)
    expected, plain_casts = _run_bf16(plain, x)  # its GroupNorms keep their casts already (the engine's own layer)
    first, first_casts = _run_bf16(kept, x)
    cast_weight = kept[0].conv1.reduced_casts[torch.bfloat16][1][0]
    again, again_casts = _run_bf16(kept, x)
    assert torch.equal(first, expected) and torch.equal(again, expected)
    assert plain_casts - again_casts == 2 * 4  # a weight and a bias for each of the 4 swapped layers
    assert again_casts == 2  # what remains: the block's float32 input, cast for conv1 and for the shortcut
    assert first_casts > plain_casts  # the first call casts everything once, GroupNorm's affine included
    assert kept[0].conv1.reduced_casts[torch.bfloat16][1][0] is cast_weight and cast_weight.dtype == torch.bfloat16


def test_a_weight_changed_after_its_cast_is_cast_again() -> None:
    plain = _layers()
    kept = _kept_copy(plain)
    x = torch.randn(1, 32, 8, 8)
    _run_bf16(kept, x)
    with torch.no_grad():
        for net in (plain, kept):
            net[2].weight.mul_(-2)  # in place, as load_state_dict writes
            net[0].conv2.weight = nn.Parameter(net[0].conv2.weight * 3)  # replaced, as Module.to can
    assert torch.equal(_run_bf16(kept, x)[0], _run_bf16(plain, x)[0])


def test_outside_autocast_or_with_autograd_on_nothing_is_kept_and_nothing_changes() -> None:
    plain = _layers()
    kept = _kept_copy(plain)
    x = torch.randn(1, 32, 8, 8, requires_grad=True)
    with torch.inference_mode():
        assert torch.equal(kept(x.detach()), plain(x.detach()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = kept(x)
        assert torch.equal(out, plain(x))
    out.float().sum().backward()  # autocast's casts carry gradients; a kept one could not
    assert x.grad is not None and kept[0].conv1.weight.grad is not None
    assert not any(hasattr(layer, "reduced_casts") for layer in kept.modules())


def test_codeformer_keeps_its_state_dict_and_the_pipeline_casts_once_on_cuda_only() -> None:
    net = network_skeleton("restore")
    keys = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    plain_layers = sum(type(layer) in (nn.Conv2d, nn.Linear) for layer in net.modules())
    assert use_cast_once_weights(net) == plain_layers > 100
    assert {name: tuple(t.shape) for name, t in net.state_dict().items()} == keys
    assert not any(type(layer) in (nn.Conv2d, nn.Linear) for layer in net.modules())
    for device, swapped in (("cuda", True), ("cpu", False)):
        models = Models(weights=None, device=torch.device(device), cpu_kernels="plain")
        tuned = models._tuned(network_skeleton("restore"))
        assert isinstance(tuned.generator.blocks[0], CastOnceConv2d) is swapped
        assert isinstance(tuned.feat_emb, CastOnceLinear) is swapped


@pytest.mark.parametrize("layer", [nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.Linear(4, 4, bias=False)])
def test_a_layer_without_bias_keeps_only_its_weight(layer: nn.Module) -> None:
    holder = nn.Sequential(layer).eval()
    plain = copy.deepcopy(holder)
    use_cast_once_weights(holder)
    x = torch.randn(1, 4, 4, 4)
    assert torch.equal(_run_bf16(holder, x)[0], _run_bf16(plain, x)[0])
    assert holder[0].reduced_casts[torch.bfloat16][1][1] is None


def test_the_attention_keeps_its_input_projection_cast_with_the_numbers_of_a_cast_per_call() -> None:
    torch.manual_seed(1)
    layer = TransformerSALayer(64, 4, 128).eval()
    with torch.no_grad():
        for parameter in layer.parameters():  # the projection is left uninitialised: a checkpoint fills it
            parameter.copy_(torch.randn_like(parameter) * 0.2)
    tokens, position = torch.randn(2, 16, 64), torch.randn(16, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # autograd's mode: cast on each call
        expected = layer(tokens, position)
    assert not hasattr(layer.self_attn, "reduced_casts")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(tokens, position)
    kept_weight, kept_bias = layer.self_attn.reduced_casts[torch.bfloat16][1]
    assert torch.equal(out, expected)
    assert kept_weight.dtype == kept_bias.dtype == torch.bfloat16 and kept_weight.shape == (3 * 64, 64)

"""Fast CPU convolutions (Winograd through NNPACK, 1 x 1 as GEMM): nn.Conv2d's results where they run, the
module's own path elsewhere."""

import pytest
import torch
from torch import nn

from codeformer_core.compat import nnpack_available
from codeformer_core.network import cpu_convolutions
from codeformer_core.network.cpu_convolutions import (
    MIN_SIDE,
    CpuConv2d,
    use_fast_cpu_convolutions,
)

pytestmark = pytest.mark.skipif(not nnpack_available(), reason="this torch build has no NNPACK")


def _swapped(conv: nn.Conv2d) -> nn.Module:
    holder = nn.Sequential(conv)
    use_fast_cpu_convolutions(holder)
    return holder[0]


@pytest.mark.parametrize(("padding", "bias", "shape"), [(1, True, (1, 8, 40, 33)), (0, False, (2, 8, 36, 48))])
def test_matches_the_plain_convolution(nnpack_calls: list, padding: int, bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=padding, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        expected = conv(x)
        actual = _swapped(conv)(x)
    assert nnpack_calls == [shape]
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("bias", [True, False])
def test_one_by_one_is_a_matrix_product_with_the_same_result(nnpack_calls: list, bias: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, bias=bias)
    x = torch.randn(2, 8, 5, 7)
    with torch.inference_mode():
        expected = conv(x)
        actual = _swapped(conv)(x)
    assert nnpack_calls == []
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_channels_last_input_gives_the_same_values(nnpack_calls: list) -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 32, 32)
    with torch.inference_mode():
        expected = conv(x)
        actual = _swapped(conv)(x.contiguous(memory_format=torch.channels_last))
    assert len(nnpack_calls) == 1
    assert (actual - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize(("padding", "shape", "band_rows"), [(1, (1, 8, 100, 70), 12), (0, (2, 8, 98, 60), 6)])
def test_a_large_convolution_runs_in_bands_of_rows_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch, nnpack_calls: list, padding: int, shape: tuple[int, ...], band_rows: int
) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=padding)
    x = torch.randn(shape)
    out_height = shape[2] + 2 * padding - 2
    tiles_per_row = shape[0] * -(-(shape[3] + 2 * padding - 2) // 6)
    # A limit that lets `band_rows` output rows (whole 6-row Winograd tiles) through at a time.
    monkeypatch.setattr(cpu_convolutions, "WORKSPACE_LIMIT", tiles_per_row * (band_rows // 6) * 64 * (8 + 16) * 4)
    with torch.inference_mode():
        expected = conv(x)
        actual = _swapped(conv)(x)
    bands = -(-out_height // band_rows)
    assert len(nnpack_calls) == bands
    # Each band reads its output rows plus the two rows around them (padding rows at the image's edges).
    tops = range(0, out_height, band_rows)
    assert [call[2] for call in nnpack_calls] == [min(band_rows, out_height - top) + 2 for top in tops]
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize(
    "case", ["small map", "float64", "autocast", "autograd"],
)
def test_falls_back_to_the_module_convolution(nnpack_calls: list, case: str) -> None:
    conv = _swapped(nn.Conv2d(4, 4, 3, padding=1))
    x = torch.randn(1, 4, MIN_SIDE - 1 if case == "small map" else MIN_SIDE, MIN_SIDE)
    if case == "float64":
        conv, x = conv.double(), x.double()
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():
            out = conv(x)
        assert out.dtype == torch.bfloat16
    elif case == "autograd":
        out = conv(x)
        out.sum().backward()
        assert conv.weight.grad is not None
    else:
        with torch.inference_mode():
            out = conv(x)
    assert nnpack_calls == []
    assert out.shape == (1, 4, *x.shape[-2:])


def test_swaps_only_suitable_convolutions_and_keeps_the_parameters() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU()),
        nn.Conv2d(8, 8, 1),
        nn.Conv2d(8, 8, 3, stride=2),
        nn.Conv2d(8, 8, 1, stride=2),
        nn.Conv2d(8, 8, 1, padding=1),
        nn.Conv2d(8, 8, 3, groups=2),
        nn.Conv2d(8, 8, 3, dilation=2),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(8, 8, 3, padding="same"),
    )
    before = {name: tensor for name, tensor in model.state_dict().items()}
    first_weight = model[0].weight
    assert use_fast_cpu_convolutions(model) == 3
    assert [type(layer) for layer in (model[0], model[1][0], model[2])] == [CpuConv2d] * 3
    assert all(type(layer) is nn.Conv2d for layer in model[3:])
    assert model[0].weight is first_weight and model[1][0].bias is None
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


def test_a_torch_without_nnpack_runs_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch, "_nnpack_spatial_convolution")
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1))
    x = torch.randn(1, 3, 40, 40)
    expected = model(x)

    assert not nnpack_available()
    assert use_fast_cpu_convolutions(model) == 0
    assert all(type(layer) is nn.Conv2d for layer in model)
    assert torch.equal(model(x), expected)


def test_a_module_off_the_cpu_is_left_alone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, device="meta"))
    assert use_fast_cpu_convolutions(model) == 0
    assert type(model[0]) is nn.Conv2d

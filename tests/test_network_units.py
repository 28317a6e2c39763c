"""Fast tests of the network's pieces and of checkpoint loading (no 512x512 forward pass)."""

import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codeformer_core.compat import nnpack_available
from codeformer_core.errors import (
    CheckpointMismatchError,
    CorruptWeightsError,
    InvalidImageError,
    InvalidOptionError,
    WeightsUnavailableError,
)
from codeformer_core.layouts import TASKS
from codeformer_core.network import (
    EncodedFaces,
    build_network,
    composite_inpainting,
    precision,
    reduced_precision,
    vqgan,
)
from codeformer_core.network.batches import batch_size_for, crops_to_tensor, tensor_to_crops
from codeformer_core.network.codeformer import (
    ControllableFeatureTransform,
    adaptive_instance_normalization,
    network_skeleton,
)
from codeformer_core.network.cpu_convolutions import CpuConv2d
from codeformer_core.network.loading import checkpoint_task, load_network
from codeformer_core.network.precision import (
    computing_at,
    exact_cuda_convolutions,
    fast_mode_precision,
    overflow_fallback,
)
from codeformer_core.network.transformer import TransformerSALayer
from codeformer_core.network.vqgan import (
    AttnBlock,
    AutocastGroupNorm,
    Downsample,
    PreciseGroupNorm,
    ResBlock,
    Upsample,
    VectorQuantizer,
)
from codeformer_core.pipeline.models import Models
from codeformer_core.weights.checkpoints import read_state_dict
from tests.support.golden import golden_state_dict, manifest, write_official_checkpoint


@pytest.fixture(scope="module")
def restore_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_checkpoint("restore", tmp_path_factory.mktemp("weights") / "codeformer.pth")


@pytest.fixture(scope="module")
def restore_net() -> nn.Module:
    """The restore network without storage: enough for argument checks, which come before any computation."""
    return network_skeleton("restore")


def shape_only_checkpoint(task: str, path: Path) -> Path:
    """A checkpoint with the published keys and shapes for `task` whose tensors are one zero broadcast to the
    shape: enough for key checks, and a file of a few kilobytes."""
    zero = torch.zeros(1)
    torch.save({"params_ema": {name: zero.expand(shape) for name, shape in manifest(task)}}, path)
    return path


class Payload:
    """A class a weights-only unpickler must refuse to import."""


# --- checkpoints -------------------------------------------------------------------------------------------------


def test_official_checkpoint_round_trips_through_load_network(restore_checkpoint: Path) -> None:
    net = load_network("restore", restore_checkpoint)
    expected = golden_state_dict("restore")
    loaded = net.state_dict()
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)
    assert net.task == "restore" and not net.training
    assert next(net.parameters()).device.type == "cpu"


@pytest.mark.parametrize(
    ("wanted", "given", "clues"),
    [
        ("colorize", "restore", ["fuse_convs_dict.256", "unexpected keys", "codeformer_colorization.pth"]),
        ("restore", "colorize", ["fuse_convs_dict.256", "missing keys", "codeformer.pth"]),
        ("colorize", "inpaint", ["quantize.embedding.weight is (512, 256)", "wrong shapes"]),
        ("inpaint", "restore", ["(1024, 256)", "codeformer_inpainting.pth"]),
    ],
)
def test_wrong_task_checkpoint_names_file_and_likely_task(
    tmp_path: Path, wanted: str, given: str, clues: list[str]
) -> None:
    path = shape_only_checkpoint(given, tmp_path / f"{given}_weights.pth")
    with pytest.raises(CheckpointMismatchError) as caught:
        load_network(wanted, path)
    message = str(caught.value)
    assert str(path) in message
    assert f"the {wanted} network" in message
    assert f"looks like the {given} checkpoint" in message
    for clue in clues:
        assert clue in message


def test_foreign_state_dict_is_not_taken_for_a_task(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"params": {"conv.weight": torch.zeros(4, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointMismatchError, match="does not look like any published CodeFormer") as caught:
        load_network("restore", path)
    assert "unexpected keys: conv.weight" in str(caught.value)
    assert "missing keys: position_emb, encoder.blocks.0.weight" in str(caught.value)


@pytest.mark.parametrize("task", TASKS)
def test_checkpoint_task_recognises_each_manifest(task: str) -> None:
    assert checkpoint_task(dict(manifest(task))) == task


def test_checkpoint_task_rejects_the_vqgan_alone() -> None:
    vqgan_only = {name: shape for name, shape in manifest("restore") if name.split(".")[0] in
                  ("encoder", "quantize", "generator")}
    assert checkpoint_task(vqgan_only) is None


@pytest.mark.parametrize("wrapper", ["params_ema", "params", None])
def test_read_state_dict_unwraps_the_usual_layouts(tmp_path: Path, wrapper: str | None) -> None:
    tensors = {"a.weight": torch.arange(6.0).view(2, 3), "a.bias": torch.ones(2)}
    path = tmp_path / "w.pth"
    torch.save(tensors if wrapper is None else {wrapper: tensors, "iter": 7}, path)
    loaded = read_state_dict(path)
    assert list(loaded) == list(tensors) and all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_read_state_dict_prefers_params_ema_and_honours_an_explicit_key(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"params": {"x": torch.zeros(1)}, "params_ema": {"x": torch.ones(1)}}, path)
    assert read_state_dict(path)["x"].item() == 1.0
    assert read_state_dict(path, key="params")["x"].item() == 0.0
    with pytest.raises(CorruptWeightsError, match="has no entry 'model'.*params"):
        read_state_dict(path, key="model")


def test_truncated_checkpoint_is_corrupt(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pth"
    torch.save({"params_ema": {"x": torch.zeros(1000)}}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CorruptWeightsError, match="truncated or corrupt.*delete it and download it again") as caught:
        read_state_dict(cut)
    assert str(cut) in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 8, b"\x80\x02" + bytes(range(256))])
def test_garbage_bytes_are_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(CorruptWeightsError, match="truncated or corrupt"):
        read_state_dict(path)


@pytest.mark.parametrize("use_torch_save", [True, False])
def test_pickle_with_code_is_refused(tmp_path: Path, use_torch_save: bool) -> None:
    path = tmp_path / "payload.pth"
    payload = {"params_ema": {"x": torch.zeros(1)}, "extra": Payload()}
    if use_torch_save:
        torch.save(payload, path)
    else:
        # Protocol 2 as torch.save writes it; newer protocols' framing is refused before any class is met.
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CorruptWeightsError, match="refused: this file contains code, not just tensors") as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content", [[torch.zeros(1)], {"params_ema": {"x": "text"}}, {"epoch": 3, "x": 1}])
def test_non_state_dict_content_is_corrupt(tmp_path: Path, content: object) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CorruptWeightsError, match="tensors"):
        read_state_dict(path)


def test_missing_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="nothere.pth does not exist"):
        read_state_dict(tmp_path / "nothere.pth")


# --- network construction and arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["", "restoration", "Restore", None])
def test_invalid_task_is_refused(tmp_path: Path, task: object) -> None:
    with pytest.raises(InvalidOptionError, match="task must be one of restore, colorize, inpaint"):
        build_network(task)
    with pytest.raises(InvalidOptionError):
        load_network(task, tmp_path / "unused.pth")


def test_cft_blocks_sit_where_the_reference_puts_them(restore_net: nn.Module) -> None:
    # The reference's tables: encoder features after blocks {512: 2, 256: 5, 128: 8, 64: 11, 32: 14}, fused into the
    # generator after blocks {32: 9, 64: 12, 128: 15, 256: 18, 512: 21}.
    assert restore_net.encoder.skip_block_at == {512: 2, 256: 5, 128: 8, 64: 11, 32: 14, 16: 18}
    assert restore_net.generator.fuse_block_at == {16: 4, 32: 9, 64: 12, 128: 15, 256: 18, 512: 21}
    channels = {res: block.scale[0].in_channels for res, block in restore_net.fuse_convs_dict.items()}
    assert channels == {"32": 256, "64": 256, "128": 128, "256": 128}


@pytest.mark.parametrize("w", [-0.01, 1.01, math.nan, "0.5", None, True])
def test_invalid_fidelity_is_refused(restore_net: nn.Module, w: object) -> None:
    with pytest.raises(InvalidOptionError, match="fidelity must be a number between 0 and 1"):
        restore_net.decode(small_encoded(2), w)


@pytest.mark.parametrize(
    "faces",
    [torch.zeros(3, 512, 512), torch.zeros(1, 3, 256, 256), torch.zeros(1, 4, 512, 512), torch.zeros(0, 3, 512, 512),
     torch.zeros(1, 3, 512, 512, dtype=torch.float64)],
)
def test_invalid_faces_are_refused(restore_net: nn.Module, faces: torch.Tensor) -> None:
    with pytest.raises(InvalidImageError, match="3 x 512 x 512|float32"):
        restore_net.encode(faces)


def test_invalid_precision_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="precision must be one of float32, bf16, fp16; got 'half'"):
        computing_at("half", torch.device("cpu"))


@pytest.mark.parametrize(("native", "choice"), [(True, "bf16"), (False, "float32")])
def test_reduced_precision_is_bf16_only_where_the_device_computes_it_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool, choice: str
) -> None:
    # A GPU before Ampere (a T4) emulates bf16 as a CPU without AVX512-BF16 or AMX does: both run exact float32.
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native)
    assert reduced_precision("cpu") == choice
    assert reduced_precision(torch.device("cuda", 0)) == choice
    assert fast_mode_precision("auto", "cpu") == choice
    assert fast_mode_precision("fp16", "cpu") == "fp16"  # asked for explicitly, whatever the device


@pytest.mark.parametrize(("precision_in", "native_bf16", "expected"),
                         [("fp16", True, "bf16"), ("fp16", False, "float32"), ("bf16", True, "float32")])
def test_an_overflowed_run_goes_again_in_bf16_where_native_else_float32(
    monkeypatch: pytest.MonkeyPatch, precision_in: str, native_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    assert overflow_fallback(precision_in, torch.device("cpu")) == expected


def test_exact_cuda_convolutions_keep_tf32_off_until_the_last_overlapping_run_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    first, second = exact_cuda_convolutions(), exact_cuda_convolutions()
    first.__enter__()
    assert torch.backends.cudnn.allow_tf32 is False
    second.__enter__()
    first.__exit__(None, None, None)  # another request's run ends first: this one still needs exact convolutions
    assert torch.backends.cudnn.allow_tf32 is False
    second.__exit__(None, None, None)
    assert torch.backends.cudnn.allow_tf32 is True
    with computing_at("float32", torch.device("cuda", 0)):
        assert torch.backends.cudnn.allow_tf32 is False
    with computing_at("float32", torch.device("cpu")):
        assert torch.backends.cudnn.allow_tf32 is True  # a CPU run leaves CUDA's flags alone


def _overflowing_under_autocast(method, make_result):
    """`method`, except that under autocast it returns what make_result(infinite) gives: fp16 running out of
    range."""
    def call(*args, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            return make_result(method(*args, **kwargs))
        return method(*args, **kwargs)
    return call


@pytest.mark.parametrize("half", ["encode", "decode"])
def test_a_batch_that_overflows_in_reduced_precision_runs_again(monkeypatch: pytest.MonkeyPatch, half: str) -> None:
    torch.manual_seed(0)
    net = build_network("restore").eval()
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # here fp16 falls back to float32
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    exact = net.encode(x)
    if half == "encode":
        net.predict_logits = _overflowing_under_autocast(net.predict_logits, lambda logits: logits * math.inf)
        encoded = net.encode(x, precision="fp16")
        assert torch.equal(encoded.logits, exact.logits) and torch.equal(encoded.idx, exact.idx)
    else:
        net.generate = _overflowing_under_autocast(net.generate, lambda out: out.float() * math.inf)
        out = net.decode(exact, 0.5, precision="fp16")
        assert torch.isfinite(out).all()
        assert torch.equal(out, net.decode(exact, 0.5))


def _decoder_that_overflows_fp16_from(net, lowest_w: float) -> list[tuple[float, torch.dtype]]:
    """Replace `net.generate` by one that returns zeros, or infinities for fp16 at `lowest_w` or above; returns
    the (w, precision) of each call as it happens."""
    calls = []

    def generate(quant_feat, skips, w):
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
        calls.append((w, dtype))
        out = torch.zeros(len(quant_feat), 3, 512, 512)
        return out + math.inf if dtype == torch.float16 and w >= lowest_w else out

    net.generate = generate
    return calls


def _zero_encoded(faces: int) -> EncodedFaces:
    return EncodedFaces(quant_feat=torch.zeros(faces, 256, 16, 16), skips={}, logits=torch.zeros(faces, 256, 1024),
                        idx=torch.zeros(faces, 256, dtype=torch.long), lq_feat=torch.zeros(faces, 256, 16, 16))


def test_after_fp16_overflows_at_some_w_decodes_at_that_w_or_above_start_in_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # the fallback is bf16, as on an H100
    net = build_network("restore").eval()
    calls = _decoder_that_overflows_fp16_from(net, 0.7)
    encoded = _zero_encoded(2)
    half, bf16 = torch.float16, torch.bfloat16
    for w in (0.5, 0.8, 0.9, 0.6, 0.8):
        assert torch.isfinite(net.decode(encoded, w, precision="fp16")).all()
    assert calls == [(0.5, half), (0.8, half), (0.8, bf16), (0.9, bf16), (0.6, half), (0.8, bf16)]
    assert net.decoder_overflows.lowest_w("fp16") == 0.8
    calls.clear()
    net.decode(encoded, 0.7, precision="fp16")  # below the lowest w seen so far: fp16 is tried, and 0.7 learnt
    net.decode(encoded, 0.75, precision="fp16")
    assert calls == [(0.7, half), (0.7, bf16), (0.75, bf16)]
    assert net.decoder_overflows.lowest_w("fp16") == 0.7
    assert net.decoder_overflows.lowest_w("bf16") is None
    assert build_network("restore").decoder_overflows.lowest_w("fp16") is None  # each network learns its own
    copied = pickle.loads(pickle.dumps(net.decoder_overflows))  # a network still pickles (torch.save, Ray)
    assert copied.lowest_w("fp16") == 0.7


def test_a_decode_asks_the_device_about_bf16_only_at_or_above_a_w_that_overflowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every decode asks where it starts; the device is asked about bf16 only where the answer could change it.
    asked = []
    monkeypatch.setattr(precision, "native_bf16", lambda device: asked.append(device) or True)
    overflows, cpu = precision.DecoderOverflows(), torch.device("cpu")
    assert overflows.start_precision("fp16", 0.9, cpu) == "fp16" and asked == []
    overflows.note("fp16", 0.8)
    assert overflows.start_precision("fp16", 0.5, cpu) == "fp16" and asked == []
    assert overflows.start_precision("fp16", 0.8, cpu) == "bf16" and asked == [cpu]


def test_where_the_fallback_is_float32_every_fp16_decode_tries_fp16_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # a GPU without bf16 units, like a T4
    net = build_network("restore").eval()
    calls = _decoder_that_overflows_fp16_from(net, 0.7)
    for _ in range(2):
        assert torch.isfinite(net.decode(_zero_encoded(1), 0.8, precision="fp16")).all()
    assert calls == [(0.8, torch.float16), (0.8, torch.float32)] * 2
    assert net.decoder_overflows.lowest_w("fp16") == 0.8


def test_upsampling_under_autocast_runs_outside_it_with_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA's autocast upsamples in float32 (a CPU's keeps the input's precision, so the call is what is seen here):
    # ours upsamples with autocast off, in the features' own precision.
    torch.manual_seed(3)
    up = Upsample(8).eval()
    x = torch.randn(2, 8, 6, 6).bfloat16()
    autocast_on, plain_interpolate = [], F.interpolate

    def interpolate(*args, **kwargs):
        autocast_on.append(torch.is_autocast_enabled("cpu"))
        return plain_interpolate(*args, **kwargs)

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = up.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        monkeypatch.setattr(vqgan.F, "interpolate", interpolate)
        out = up(x)
    assert autocast_on == [False]
    assert torch.equal(out, expected) and out.dtype == torch.bfloat16 and out.shape == (2, 8, 12, 12)


def test_the_cft_block_under_autocast_fuses_in_the_decoders_precision_not_float32() -> None:
    torch.manual_seed(4)
    block = ControllableFeatureTransform(32).eval()
    enc_feat, dec_feat = torch.randn(1, 32, 8, 8), torch.randn(1, 32, 8, 8)  # encoder features are kept float32
    fused_inputs = []
    block.encode_enc.register_forward_pre_hook(lambda module, args: fused_inputs.append(args[0].dtype))
    with torch.inference_mode():
        exact = block(enc_feat, dec_feat, 0.7)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reduced = block(enc_feat, dec_feat.bfloat16(), 0.7)
    assert fused_inputs == [torch.float32, torch.bfloat16]  # cat would have promoted the pair to float32
    assert reduced.dtype == torch.bfloat16
    assert (reduced.float() - exact).abs().max() < 0.05 * exact.abs().max()


def test_group_norm_under_autocast_stays_in_the_reduced_precision_and_close_to_float32() -> None:
    torch.manual_seed(2)
    norm = AutocastGroupNorm(4, 16, eps=1e-6).eval()
    nn.init.uniform_(norm.weight, 0.5, 1.5)
    nn.init.uniform_(norm.bias, -0.2, 0.2)
    x = torch.randn(2, 16, 8, 8) * 3 + 1
    plain = nn.GroupNorm(4, 16, eps=1e-6)
    plain.load_state_dict(norm.state_dict())
    with torch.inference_mode():
        exact = norm(x)
        assert torch.equal(exact, plain(x))  # float32 outside autocast: plain GroupNorm
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reduced = norm(x.bfloat16())
    # (CUDA's autocast would run a plain GroupNorm in float32, in and out; a CPU's keeps bf16 either way.)
    assert reduced.dtype == torch.bfloat16
    assert (reduced.float() - exact).abs().max() < 0.05 * exact.abs().max()


# --- building blocks ------------------------------------------------------------------------------------------------


def test_adain_gives_content_the_style_statistics() -> None:
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 8, 16, 16, generator=generator) * 3 + 5
    style = torch.randn(2, 8, 16, 16, generator=generator) * 0.5 - 1
    out = adaptive_instance_normalization(content, style)
    assert torch.allclose(out.mean(dim=(2, 3)), style.mean(dim=(2, 3)), atol=1e-5)
    # The reference adds eps to both variances, so the std ratio holds up to eps.
    assert torch.allclose(out.std(dim=(2, 3)), style.std(dim=(2, 3)), rtol=1e-4)
    normalized = (content - content.mean(dim=(2, 3), keepdim=True)) / content.std(dim=(2, 3), keepdim=True)
    assert torch.allclose((out - out.mean(dim=(2, 3), keepdim=True)) / out.std(dim=(2, 3), keepdim=True),
                          normalized, atol=1e-4)


def test_code_lookup_equals_one_hot_matmul() -> None:
    quantizer = VectorQuantizer(codebook_size=12, emb_dim=4)
    nn.init.normal_(quantizer.embedding.weight)
    indices = torch.randint(0, 12, (3, 6), generator=torch.Generator().manual_seed(1))
    one_hot = F.one_hot(indices, 12).float()
    expected = (one_hot @ quantizer.embedding.weight).view(3, 2, 3, 4).permute(0, 3, 1, 2)
    with torch.inference_mode():
        assert torch.equal(quantizer.lookup(indices, 2, 3), expected)


def test_attention_block_matches_the_explicit_formula() -> None:
    torch.manual_seed(2)
    block = AttnBlock(32).eval()
    x = torch.randn(2, 32, 4, 5)
    with torch.inference_mode():
        normed = block.norm(x)
        q, k, v = (conv(normed).flatten(2) for conv in (block.q, block.k, block.v))  # N x C x HW
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(32), dim=2)  # N x HW(query) x HW(key)
        expected = x + block.proj_out((v @ weights.transpose(1, 2)).view_as(x))
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_transformer_layer_matches_torch_multihead_attention() -> None:
    torch.manual_seed(3)
    layer = TransformerSALayer(dim=16, heads=4, dim_mlp=32).eval()
    nn.init.normal_(layer.self_attn.in_proj_weight, std=0.3)
    nn.init.normal_(layer.self_attn.in_proj_bias, std=0.3)
    reference_attn = nn.MultiheadAttention(16, 4).eval()
    reference_attn.load_state_dict(layer.self_attn.state_dict())
    tokens, position = torch.randn(2, 10, 16), torch.randn(10, 16)
    with torch.inference_mode():
        # The reference is sequence-first (L x N x dim).
        normed = layer.norm1(tokens).transpose(0, 1)
        query = normed + position[:, None]
        x = tokens + reference_attn(query, query, normed)[0].transpose(0, 1)
        expected = x + layer.linear2(F.gelu(layer.linear1(layer.norm2(x))))
        assert torch.allclose(layer(tokens, position), expected, atol=1e-5)


def test_bf16_autocast_runs_a_resblock_close_to_float32() -> None:
    torch.manual_seed(4)
    block = ResBlock(32, 64).eval()
    x = torch.randn(1, 32, 16, 16)
    with torch.inference_mode():
        exact = block(x)
        with computing_at("bf16", x.device):
            reduced = block(x)
    assert reduced.dtype == torch.bfloat16
    assert (reduced.float() - exact).abs().max() < 0.05 * exact.abs().max()


def test_crops_become_rgb_tensors_in_minus_one_to_one_and_come_back_exactly() -> None:
    rng = np.random.default_rng(8)
    crops = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(2)]
    crops[0][3, 5] = (10, 128, 255)  # B, G, R
    tensor = crops_to_tensor(crops, torch.device("cpu"))
    assert tensor.shape == (2, 3, 16, 24) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert tensor[0, :, 3, 5].tolist() == pytest.approx([1.0, 128 / 127.5 - 1, 10 / 127.5 - 1], abs=1e-6)
    back = tensor_to_crops(tensor)
    assert all(face.dtype == np.uint8 and face.flags.c_contiguous for face in back)
    np.testing.assert_array_equal(np.stack(back), np.stack(crops))
    clipped = tensor_to_crops(torch.full((1, 3, 2, 2), 1.7))  # unclamped network output
    assert (clipped[0] == 255).all()


@pytest.mark.parametrize(("memory_gib", "expected"), [(16, 4), (48, 4), (80, 16), (141, 16)])
def test_faces_per_network_pass_grow_with_the_gpus_memory(
    monkeypatch: pytest.MonkeyPatch, memory_gib: int, expected: int
) -> None:
    card = SimpleNamespace(total_memory=memory_gib * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: card)
    assert batch_size_for(torch.device("cuda")) == expected
    assert batch_size_for(torch.device("cpu")) == 1


def test_inpainting_composite_takes_output_only_in_white_holes() -> None:
    x = torch.full((1, 3, 2, 2), -0.5)
    x[0, :, 0, 0] = 1.0  # a hole
    x[0, :2, 1, 1] = 1.0  # white in two channels only: not a hole
    out = torch.full_like(x, 0.25)
    composite = composite_inpainting(x, out)
    assert torch.equal(composite[0, :, 0, 0], torch.full((3,), 0.25))
    assert torch.equal(composite[0, :, 1, 1], x[0, :, 1, 1])
    assert torch.equal(composite[0, :, 0, 1], x[0, :, 0, 1])


# --- EncodedFaces -------------------------------------------------------------------------------------------------


def small_encoded(n: int) -> EncodedFaces:
    """N fake encoded faces whose every tensor holds its face number, at shapes like the real ones."""
    face = torch.arange(n, dtype=torch.float32)
    return EncodedFaces(
        quant_feat=face.view(n, 1, 1, 1).expand(n, 256, 16, 16).clone(),
        skips={32: face.view(n, 1, 1, 1).expand(n, 256, 32, 32).clone()},
        logits=face.view(n, 1, 1).expand(n, 256, 8).clone(),
        idx=torch.arange(n).view(n, 1).expand(n, 256).clone(),
        lq_feat=face.view(n, 1, 1, 1).expand(n, 256, 16, 16).clone(),
    )


@pytest.mark.parametrize(("faces", "expected"), [(1, [1]), (-1, [3]), (slice(1, 3), [1, 2]), ([3, 0], [3, 0]),
                                                  (torch.tensor([2]), [2])])
def test_encoded_faces_select_keeps_the_batch_dimension(faces: object, expected: list[int]) -> None:
    encoded = small_encoded(4)
    chosen = encoded[faces]
    assert len(chosen) == len(expected)
    assert chosen.idx[:, 0].tolist() == expected
    for tensor in (chosen.quant_feat, chosen.skips[32], chosen.logits, chosen.lq_feat):
        assert tensor.shape[0] == len(expected)
        assert tensor.flatten(1)[:, 0].tolist() == [float(i) for i in expected]


def test_encoded_faces_select_out_of_range_and_to_device() -> None:
    encoded = small_encoded(2)
    with pytest.raises(IndexError, match="face 2 is out of range for 2"):
        encoded.select(2)
    moved = encoded.to("cpu")
    assert torch.equal(moved.skips[32], encoded.skips[32]) and moved.idx.dtype == torch.int64


@pytest.mark.parametrize(("device", "kernels", "layout", "winograd"), [
    # The default layout measured faster on CUDA than channels_last (results-cuda.md), in bf16 too.
    ("cuda", "channels-last", torch.contiguous_format, False),
    ("cpu", "channels-last", torch.channels_last, False),
    ("cpu", "plain", torch.contiguous_format, False),
    ("cpu", "winograd", torch.contiguous_format, True),
])
def test_the_pipeline_tunes_the_network_as_the_kernel_decision_says(
    device: str, kernels: str, layout, winograd: bool
) -> None:
    models = Models(weights=None, device=torch.device(device), cpu_kernels=kernels)
    net = network_skeleton("restore").to_empty(device="cpu") if device == "cpu" else network_skeleton("restore")
    tuned = models._tuned(net)
    assert tuned.memory_format == layout
    assert any(isinstance(layer, CpuConv2d) for layer in tuned.modules()) is (winograd and nnpack_available())


def test_group_norm_under_autocast_runs_outside_it_at_the_inputs_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA's autocast casts a plain GroupNorm's input up to float32 (a CPU's does not, so the call is what is seen
    # here): ours is called with autocast off and its weights at the features' precision.
    calls = []
    group_norm = F.group_norm

    def recording(x, groups, weight=None, bias=None, eps=1e-5):
        calls.append((x.dtype, weight.dtype, torch.is_autocast_enabled("cpu")))
        return group_norm(x, groups, weight, bias, eps)

    monkeypatch.setattr(F, "group_norm", recording)
    norm = AutocastGroupNorm(4, 16, eps=1e-6)
    x = torch.randn(1, 16, 4, 4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        norm(x.bfloat16())
        norm(x)
    norm(x)
    assert calls == [(torch.bfloat16, torch.bfloat16, False), (torch.float32, torch.float32, True),
                     (torch.float32, torch.float32, False)]


def test_channels_last_switches_every_spatial_convolution_and_back() -> None:
    net = network_skeleton("restore").use_channels_last()
    kernels = [p for p in net.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert len(kernels) > 90
    assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in kernels)
    net.use_channels_last(False)
    assert all(p.is_contiguous() for p in net.parameters())


def test_precise_group_norm_on_channels_last_float32_matches_float64_where_torchs_kernel_drifts() -> None:
    # Features far from zero, as deep in the encoder: a float32 sum of squares loses digits there.
    generator = torch.Generator().manual_seed(3)
    x = (torch.randn(1, 64, 256, 256, generator=generator) * 3 + 20).contiguous(memory_format=torch.channels_last)
    norm = PreciseGroupNorm(32, 64, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=generator)
        norm.bias.uniform_(-0.1, 0.1, generator=generator)
    exact = F.group_norm(x.double(), 32, norm.weight.double(), norm.bias.double(), 1e-6)
    with torch.inference_mode():
        ours = norm(x)
        torchs = F.group_norm(x, 32, norm.weight, norm.bias, 1e-6)
        swished = norm.with_swish(x)
    assert ours.dtype == torch.float32 and ours.is_contiguous(memory_format=torch.channels_last)
    assert (ours.double() - exact).abs().max() < 2e-5 < (torchs.double() - exact).abs().max()
    assert torch.equal(swished, F.silu(ours))
    # Each face of a batch has statistics of its own.
    pair = torch.cat([x, x.flip(2) * 0.5 - 3]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        both = norm(pair)
        second = norm(pair[1:].contiguous(memory_format=torch.channels_last))
    assert (both[1] - second[0]).abs().max() < 2e-5 and (both[0] - ours[0]).abs().max() < 2e-5
    # Other layouts and precisions are AutocastGroupNorm's, bit for bit.
    plain = x.contiguous()
    with torch.inference_mode():
        assert torch.equal(norm(plain), F.group_norm(plain, 32, norm.weight, norm.bias, 1e-6))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(norm(x.bfloat16()), AutocastGroupNorm.forward(norm, x.bfloat16()))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_downsample_pads_right_and_bottom_as_f_pad_does_in_the_features_layout(layout) -> None:
    block = Downsample(8)
    x = torch.randn(2, 8, 9, 12).contiguous(memory_format=layout) + 5
    with torch.inference_mode():
        expected = block.conv(F.pad(x, (0, 1, 0, 1)))
        out = block(x)
    assert torch.equal(out, expected)
    assert out.shape == (2, 8, 4, 6) and out.is_contiguous(memory_format=layout)

"""Real-ESRGAN x2plus background upsampler with random weights in the official file layout.

The network is the full x2plus (23 blocks, ~1 s per forward even on a few pixels of this CPU), so the images are
tiny and the upsamplers shared.
"""

import numpy as np
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet  # noqa: E402 - after codeformer_core.network.realesrgan installed the shim

from codeformer_core.errors import CheckpointMismatchError, InvalidImageError, InvalidOptionError
from codeformer_core.images import read_image_array
from codeformer_core.network.realesrgan import BackgroundUpsampler
from codeformer_core.options import RestoreOptions
from codeformer_core.pipeline import Pipeline, RestoreRequest
from codeformer_core.settings import HubSettings
from codeformer_core.weights import WeightStore
from tests.support.checkpoint_files import write_realesrgan

TILE = 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_realesrgan(tmp_path_factory.mktemp("realesrgan") / "RealESRGAN_x2plus.pth")


@pytest.fixture(scope="module")
def tiled(checkpoint):
    return BackgroundUpsampler.from_checkpoint(checkpoint, "cpu", tile=TILE)


def count_forward_calls(upsampler: BackgroundUpsampler) -> list[int]:
    calls = [0]

    def hook(*_):
        calls[0] += 1

    upsampler.network.register_forward_hook(hook)
    return calls


def test_tiles_are_used_and_match_one_pass(checkpoint, tiled):
    image = np.random.default_rng(5).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    whole = BackgroundUpsampler.from_checkpoint(checkpoint, "cpu", tile=0)
    tiled_calls, whole_calls = count_forward_calls(tiled), count_forward_calls(whole)

    out_tiled = tiled.upsample(image, outscale=2)
    out_whole = whole.upsample(image, outscale=2)

    assert tiled.tile == TILE
    assert tiled_calls == [2] and whole_calls == [1]  # 16 x 8 in 8 px tiles
    assert out_tiled.shape == (16, 32, 3) and out_tiled.dtype == np.uint8
    # The 40 px tile overlap covers this whole image, so every tile saw everything: same pixels.
    np.testing.assert_array_equal(out_tiled, out_whole)
    assert next(tiled.network.parameters()).dtype == torch.float32  # no half precision on CPU


def test_output_size_follows_outscale_for_odd_sizes(tiled):
    # 7 x 9 is padded to even sizes for the x2 network, then the x2 output is resized to x3.
    output = tiled.upsample(np.full((7, 9, 3), 90, np.uint8), outscale=3)
    assert output.shape == (21, 27, 3) and output.dtype == np.uint8


def test_bad_options_and_inputs_are_refused(checkpoint, tiled):
    with pytest.raises(InvalidOptionError, match="tile"):
        BackgroundUpsampler.from_checkpoint(checkpoint, tile=15)
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InvalidOptionError, match="outscale"):
        tiled.upsample(image, outscale=0)
    with pytest.raises(InvalidImageError, match="uint8"):
        tiled.upsample(image.astype(np.float32), outscale=2)


def test_a_checkpoint_for_another_network_is_named(tmp_path):
    wrong = tmp_path / "RealESRGAN_x4plus.pth"
    x4 = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=2, num_grow_ch=32, scale=4)
    torch.save({"params_ema": x4.state_dict()}, wrong)
    mismatch = r"x4plus\.pth does not fit the Real-ESRGAN x2plus.*RealESRGAN_x2plus"
    with pytest.raises(CheckpointMismatchError, match=mismatch):
        BackgroundUpsampler.from_checkpoint(wrong)


def test_a_small_photos_background_is_enhanced_from_the_photo_as_given(stand_in_weights, monkeypatch):
    # As the official script: Real-ESRGAN on the photo before its enlargement to a shorter side of 512, then resized.
    weights = WeightStore(stand_in_weights("RealESRGAN_x2plus.pth"), hub=HubSettings(offline=True))
    pipeline = Pipeline(weights, "cpu")
    seen = []
    upsample = BackgroundUpsampler.upsample

    def spied(self, image, outscale):
        seen.append((image.shape, outscale))
        return upsample(self, image, outscale)

    monkeypatch.setattr(BackgroundUpsampler, "upsample", spied)
    photo = read_image_array(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))

    result = pipeline.run(RestoreRequest(photo, RestoreOptions(upscale=2, background="realesrgan"), faces=[]))

    assert seen == [((48, 64, 3), 2)]
    assert result.image.shape == (1024, 1366, 3)  # 48 x 64 enlarged to 512 x 683, then twice that


def test_a_bare_state_dict_is_refused_in_one_line_naming_the_official_file(checkpoint, tmp_path):
    # read_state_dict takes a file without the params / params_ema wrapper; RealESRGANer's own loader does not.
    bare = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save(torch.load(checkpoint, weights_only=True)["params_ema"], bare)

    with pytest.raises(CheckpointMismatchError, match="'params_ema' or 'params'.*official RealESRGAN_x2plus.pth"):
        BackgroundUpsampler.from_checkpoint(bare, "cpu", tile=TILE)

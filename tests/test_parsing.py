"""ParseNet paste masks (random weights in the official file layout) and the eroded-rectangle mask."""

import cv2
import numpy as np
import pytest
import torch

from codeformer_core.errors import CheckpointMismatchError, CorruptWeightsError, InvalidOptionError
from codeformer_core.faces.parsing import (
    FaceParser,
    eroded_rectangle_mask,
    load_parse_network,
    separable_blur,
    soft_face_masks,
)
from codeformer_core.layouts import FACE_SIZE
from codeformer_core.network.cpu_convolutions import CpuConv2d, use_fast_cpu_convolutions
from tests.support.checkpoint_files import write_parsenet

SKIN, NECK, HAIR, HAT = 1, 17, 13, 14


@pytest.fixture(scope="module")
def parser_checkpoint(tmp_path_factory):
    return write_parsenet(tmp_path_factory.mktemp("parsenet") / "parsing_parsenet.pth")


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8) for _ in range(2)]


def test_random_parsenet_gives_one_soft_mask_per_face_batched_or_not(parser_checkpoint, faces):
    # 64 px keeps the test fast; the network and post-processing are the same at 512.
    batched = FaceParser.from_checkpoint(parser_checkpoint, "cpu", resolution=64, max_batch=2)
    labels = batched.face_labels(faces)
    assert labels.shape == (2, 64, 64) and labels.dtype == np.uint8
    assert labels.max() < 19

    one_at_a_time = FaceParser.from_checkpoint(parser_checkpoint, "cpu", resolution=64, max_batch=1)
    masks = one_at_a_time.paste_masks(faces)
    assert masks.shape == (2, FACE_SIZE, FACE_SIZE) and masks.dtype == np.float32
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    # BatchNorm in eval mode: a face's mask does not depend on its batch neighbours.
    np.testing.assert_allclose(masks, soft_face_masks(labels), atol=1e-3)
    assert one_at_a_time.paste_masks([]).shape == (0, FACE_SIZE, FACE_SIZE)


def test_our_parsenet_computes_facexlibs_logits_from_the_same_checkpoint(tmp_path):
    from facexlib.parsing.parsenet import ParseNet as FacexlibParseNet

    torch.manual_seed(5)
    reference = FacexlibParseNet(in_size=FACE_SIZE, out_size=FACE_SIZE, parsing_ch=19).eval()
    with torch.no_grad():  # trained-looking batch-norm statistics, so folding them has something to fold
        for norm in (m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.uniform_(-0.2, 0.2)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    checkpoint = tmp_path / "parsing_parsenet.pth"
    torch.save(reference.state_dict(), checkpoint)
    ours = load_parse_network(checkpoint, torch.device("cpu"))
    use_fast_cpu_convolutions(ours)  # as the pipeline's models do on a CPU
    # 256 px: maps from 256 down to 16, so both the Winograd and the fallback convolutions run.
    x = torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32))
    with torch.inference_mode():
        expected, actual = reference(x)[0], ours(x)
    assert actual.shape == expected.shape == (1, 19, 256, 256)
    assert (actual - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert torch.equal(actual.argmax(dim=1), expected.argmax(dim=1))
    assert any(isinstance(m, CpuConv2d) for m in ours.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ours.modules())


def test_soft_mask_keeps_face_classes_and_drops_neck_hat_and_edges():
    labels = np.zeros((1, FACE_SIZE, FACE_SIZE), np.uint8)
    cv2.circle(labels[0], (256, 220), 120, SKIN, thickness=-1)
    labels[0, 420:, :] = NECK
    labels[0, :60, :] = HAT
    labels[0] = np.maximum(labels[0], labels[0, :, ::-1])  # exactly left-right symmetric
    mask = soft_face_masks(labels)[0]

    assert mask[220, 256] > 0.99  # inside the face
    assert mask[480, 256] < 0.01 and mask[30, 256] < 0.01  # neck and hat keep the photo
    assert abs(mask[220, 256 - 120] - 0.5) < 0.1  # the blurred edge is centred on the class boundary
    assert np.abs(mask - mask[:, ::-1]).max() < 1e-5  # symmetric face -> symmetric mask
    edge = 10
    assert not mask[:edge].any() and not mask[-edge:].any() and not mask[:, :edge].any() and not mask[:, -edge:].any()

    hair = labels.copy()
    hair[0, 60:150, 130:380] = HAIR  # hair counts as face in the official colormap
    assert soft_face_masks(hair)[0][110, 256] > 0.9


def test_low_resolution_labels_are_blurred_at_full_size():
    labels = np.zeros((1, 128, 128), np.uint8)
    labels[0, 32:96, 32:96] = SKIN
    mask = soft_face_masks(labels)[0]
    full = np.zeros((1, FACE_SIZE, FACE_SIZE), np.uint8)
    full[0, 128:384, 128:384] = SKIN
    assert np.abs(mask - soft_face_masks(full)[0]).max() < 0.02


def test_eroded_rectangle_mask_geometry():
    covered = np.zeros((300, 300), np.float32)
    covered[50:250, 50:250] = 1.0  # a 200 px face square: ~10 px margin, ~10 px blur
    mask = eroded_rectangle_mask(covered)

    assert mask.shape == covered.shape and mask.dtype == np.float32
    assert (mask[covered == 0] == 0).all()
    assert mask[150, 150] == pytest.approx(1.0, abs=1e-6)
    assert mask[150, 50] < 0.01 and mask[150, 249] < 0.01  # the square's own border is faded out
    assert mask[150, 80] > 0.99 and mask[150, 219] > 0.99  # 30 px in, the face is fully pasted
    ramp = mask[150, 50:90]
    assert (np.diff(ramp) >= -1e-6).all()  # rising without a step back
    assert np.abs(mask - mask.T).max() < 1e-6


def test_resolution_and_batch_are_checked(parser_checkpoint):
    with pytest.raises(InvalidOptionError, match="resolution"):
        FaceParser.from_checkpoint(parser_checkpoint, resolution=300)
    with pytest.raises(InvalidOptionError, match="max_batch"):
        FaceParser.from_checkpoint(parser_checkpoint, max_batch=0)


def test_wrong_and_corrupt_checkpoints_are_named(tmp_path, parser_checkpoint):
    corrupt = tmp_path / "parsing_parsenet.pth"
    corrupt.write_bytes(b"<html>502 Bad Gateway</html>" * 40)  # what a broken download may leave
    with pytest.raises(CorruptWeightsError, match="parsing_parsenet.pth"):
        FaceParser.from_checkpoint(corrupt)

    wrong = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, wrong)
    with pytest.raises(CheckpointMismatchError, match=r"other\.pth does not fit the ParseNet.*parsing_parsenet\.pth"):
        FaceParser.from_checkpoint(wrong)


def test_the_gpu_blur_gives_opencvs_values_borders_included():
    # A GPU makes the masks with torch's convolutions, OpenCV's blur on the CPU; run the GPU formula here.
    rng = np.random.default_rng(5)
    masks = (rng.random((2, FACE_SIZE, FACE_SIZE)) > 0.6).astype(np.float32)
    masks[:, :, :7] = 1.0  # a hard edge at the border: the reflect-101 padding decides these pixels
    expected = np.stack([cv2.GaussianBlur(mask, (101, 101), 11) for mask in masks])
    blurred = separable_blur(torch.from_numpy(masks).unsqueeze(1))[:, 0].numpy()
    assert blurred.shape == expected.shape
    np.testing.assert_allclose(blurred, expected, atol=2e-6)


def test_masks_from_labels_on_a_tensor_equal_those_from_an_array():
    labels = np.zeros((1, 128, 128), np.uint8)
    labels[0, 30:100, 20:90] = SKIN
    labels[0, 100:, :] = NECK
    from_array = soft_face_masks(labels)
    from_tensor = soft_face_masks(torch.from_numpy(labels))
    assert from_array.shape == (1, FACE_SIZE, FACE_SIZE) and from_array.dtype == np.float32
    np.testing.assert_array_equal(from_array, from_tensor)
    assert from_array[0, 256, 220] > 0.99 and from_array[0, 500, 256] < 0.01

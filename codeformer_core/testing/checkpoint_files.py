"""Checkpoints in the published files' formats, made here because the real ones cannot be downloaded.

CodeFormer files get the golden weight fill (tests/golden.py), so their outputs are pinned to the reference; the
detector, parser and upsampler get random weights with a fixed seed, which load through the same code as the
official files but do not see faces.
"""

import warnings
from pathlib import Path

import torch

from codeformer_core.compat import register_torchvision_alias

register_torchvision_alias()  # basicsr imports a module torchvision removed

from basicsr.archs.rrdbnet_arch import RRDBNet  # noqa: E402
from facexlib.parsing.parsenet import ParseNet  # noqa: E402

from .golden import write_official_checkpoint  # noqa: E402


def write_retinaface(path: Path, network: str) -> Path:
    """A bare state_dict whose keys carry DataParallel's `module.` prefix, like detection_*_Final.pth."""
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation note on resnet50(pretrained=False)
        model = RetinaFace(network_name=network, device=torch.device("cpu"))
    torch.save({f"module.{name}": tensor for name, tensor in model.state_dict().items()}, path)
    return path


def write_parsenet(path: Path) -> Path:
    """parsing_parsenet.pth is a bare state_dict."""
    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), path)
    return path


def write_realesrgan(path: Path) -> Path:
    """RealESRGAN_x2plus.pth keeps its state_dict under params_ema."""
    torch.manual_seed(0)
    model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
    torch.save({"params_ema": model.state_dict()}, path)
    return path


WRITERS = {
    "codeformer.pth": lambda path: write_official_checkpoint("restore", path),
    "codeformer_colorization.pth": lambda path: write_official_checkpoint("colorize", path),
    "codeformer_inpainting.pth": lambda path: write_official_checkpoint("inpaint", path),
    "detection_Resnet50_Final.pth": lambda path: write_retinaface(path, "resnet50"),
    "detection_mobilenet0.25_Final.pth": lambda path: write_retinaface(path, "mobile0.25"),
    "parsing_parsenet.pth": write_parsenet,
    "RealESRGAN_x2plus.pth": write_realesrgan,
}
"""Official file name -> a function writing a stand-in of that file at the given path."""

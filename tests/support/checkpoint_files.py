"""Checkpoints in the published files' formats, made here because the real ones cannot be downloaded.

CodeFormer files get the golden weight fill (support/golden.py), so their outputs are pinned to the reference; the
detector, parser and upsampler get random weights with a fixed seed, which load through the same code as the
official files but do not see faces.
"""

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from facexlib.parsing.parsenet import ParseNet

from codeformer_core.layouts import TASKS
from codeformer_core.network.realesrgan import x2plus_network
from codeformer_core.weights.registry import CODEFORMER_FILES, PARSER_FILE, REALESRGAN_FILE, RETINAFACE_FILES

from .golden import write_official_checkpoint


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
    model = x2plus_network()
    torch.save({"params_ema": model.state_dict()}, path)
    return path


WRITERS: dict[str, Callable[[Path], Path]] = {
    **{CODEFORMER_FILES[task]: partial(write_official_checkpoint, task) for task in TASKS},
    **{file: partial(write_retinaface, network=network) for network, file in RETINAFACE_FILES.items()},
    PARSER_FILE: write_parsenet,
    REALESRGAN_FILE: write_realesrgan,
}
"""Official file name -> a function writing a stand-in of that file at the given path."""

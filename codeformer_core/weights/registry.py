"""The seven pretrained files the app uses, where they officially live, and which ones a task needs.

Sizes and SHA-256 digests are the published release assets' as recorded by several independent projects that
pin them (none of these releases publishes its own checksum); None where no public source states one. A file
with a known digest is checked against it after download, so a mirror holding a different file is refused.
"""

from dataclasses import dataclass

from ..errors import InvalidOptionError
from ..layouts import Task
from ..options import Detector, RestoreOptions

_CODEFORMER_RELEASE = "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0"
_FACEXLIB_RELEASES = "https://github.com/xinntao/facexlib/releases/download"
_REALESRGAN_RELEASE = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1"

CODEFORMER_FILES: dict[Task, str] = {
    "restore": "codeformer.pth",
    "colorize": "codeformer_colorization.pth",
    "inpaint": "codeformer_inpainting.pth",
}

RETINAFACE_FILES: dict[str, str] = {
    "resnet50": "detection_Resnet50_Final.pth",
    "mobile0.25": "detection_mobilenet0.25_Final.pth",
}
"""RetinaFace backbone -> its official file."""

DETECTOR_FILES: dict[Detector, str | None] = {
    "retinaface_resnet50": RETINAFACE_FILES["resnet50"],
    "retinaface_mobile0.25": RETINAFACE_FILES["mobile0.25"],
    # dlib's models ship inside the `face_recognition_models` package: nothing to download.
    "dlib": None,
}

PARSER_FILE = "parsing_parsenet.pth"
REALESRGAN_FILE = "RealESRGAN_x2plus.pth"


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file: its official name (also its name in the weights directory) and release URL.

    size: bytes of the official file, or None when unknown.
    sha256: hex digest of the official file, or None when unknown.
    purpose: what the app uses it for, shown to users in messages and by the download command.
    """

    name: str
    url: str
    size: int | None
    sha256: str | None
    purpose: str


def _entries(*files: WeightFile) -> dict[str, WeightFile]:
    return {file.name: file for file in files}


REGISTRY: dict[str, WeightFile] = _entries(
    WeightFile(
        CODEFORMER_FILES["restore"],
        f"{_CODEFORMER_RELEASE}/codeformer.pth",
        376_637_898,
        "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
        "CodeFormer, face restoration",
    ),
    WeightFile(
        CODEFORMER_FILES["colorize"],
        f"{_CODEFORMER_RELEASE}/codeformer_colorization.pth",
        None,
        None,
        "CodeFormer, face colorization",
    ),
    WeightFile(
        CODEFORMER_FILES["inpaint"],
        f"{_CODEFORMER_RELEASE}/codeformer_inpainting.pth",
        370_786_611,
        "b0d1b868c3dacf75d637bbcc0d4b3dd4ce2a064a338dfb4d35c740d3b4ae8797",
        "CodeFormer, face inpainting",
    ),
    WeightFile(
        RETINAFACE_FILES["resnet50"],
        f"{_FACEXLIB_RELEASES}/v0.1.0/detection_Resnet50_Final.pth",
        109_497_761,
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        "RetinaFace ResNet-50, face detection",
    ),
    WeightFile(
        RETINAFACE_FILES["mobile0.25"],
        f"{_FACEXLIB_RELEASES}/v0.1.0/detection_mobilenet0.25_Final.pth",
        1_789_735,
        None,
        "RetinaFace MobileNet-0.25, face detection",
    ),
    WeightFile(
        PARSER_FILE,
        f"{_FACEXLIB_RELEASES}/v0.2.2/parsing_parsenet.pth",
        85_331_193,
        "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
        "ParseNet, face parsing for paste-back",
    ),
    WeightFile(
        REALESRGAN_FILE,
        f"{_REALESRGAN_RELEASE}/RealESRGAN_x2plus.pth",
        67_061_725,
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        "Real-ESRGAN x2plus, background and face upsampling",
    ),
)

def files_needed(options: RestoreOptions) -> list[str]:
    """Names of the files a run with `options` needs, CodeFormer's first.

    An aligned input skips detection, parsing and paste-back, so it needs only the CodeFormer file. Real-ESRGAN
    serves both the background (`background="realesrgan"`) and the restored faces (`face_upsample`).
    """
    names = [CODEFORMER_FILES[options.task]]
    if options.aligned:
        return names
    detector_file = DETECTOR_FILES[options.detector]
    if detector_file is not None:
        names.append(detector_file)
    if options.parse_paste:
        names.append(PARSER_FILE)
    if options.background == "realesrgan" or options.face_upsample:
        names.append(REALESRGAN_FILE)
    return names


def weight_file(name: str, registry: dict[str, WeightFile] = REGISTRY) -> WeightFile:
    """The registry entry for `name`; an unknown name is a caller's mistake worth a clear message."""
    try:
        return registry[name]
    except KeyError:
        raise InvalidOptionError(f"unknown weight file {name!r}; known files: {', '.join(registry)}") from None

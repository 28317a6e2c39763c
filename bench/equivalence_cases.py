"""The cases of the equivalence harness (official_equivalence.py): inputs derived from the sample photos, and the
options both sides run with.

Inputs are made in the harness's work folder from `../shared/samples/` (never copied into the repository):
resized, cropped, turned grey or sepia, given an alpha channel or 16 bits. Each derived photo knows how it maps
sample pixels to its own, so the faces found once in a sample (by our dlib detector) can be given to both sides.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

Style = Literal["as is", "grey", "sepia", "rgba", "16-bit"]
Compared = Literal["all pixels", "outside faces"]
Where = Literal["faces", "everywhere"]

SEPIA_SHIFT_BGR = np.array([-18, 2, 20])
"""A uniform colour cast added to a grey picture: the official `is_gray` (variance of channel differences) still
calls it grey, so both sides take their grey-photo path and must keep the tint."""
SIXTEEN_BIT_SPREAD = 128
"""The 16-bit input is the 8-bit one times 257 plus a fixed pseudo-random offset within +-this, so its low byte
matters and the two ways of reducing 16 bits to 8 can disagree."""
ALPHA_RANGE = (255, 96)
"""Alpha of the RGBA input runs from the first value at the left edge to the second at the right edge."""


@dataclass(frozen=True)
class CaseInput:
    """A photo made from a sample: resized by `scale` (cubic), cropped to `crop` (x, y, width, height in the resized
    picture), then given a style. A sample used as is, unstyled, is copied byte for byte (JPEG stays JPEG)."""

    sample: str
    scale: float = 1.0
    crop: tuple[int, int, int, int] | None = None
    style: Style = "as is"

    @property
    def untouched(self) -> bool:
        return self.scale == 1.0 and self.crop is None and self.style == "as is"

    @property
    def file_name(self) -> str:
        stem = Path(self.sample).stem
        if self.untouched:
            return f"{stem}{Path(self.sample).suffix}"
        parts = [stem, f"x{self.scale:g}"]
        if self.crop:
            parts.append("crop" + "-".join(map(str, self.crop)))
        parts.append(self.style.replace(" ", "").replace("-", ""))
        return "_".join(parts) + ".png"

    def write(self, samples: Path, folder: Path) -> Path:
        """The input file in `folder` (made once; an existing file is kept)."""
        target = folder / self.file_name
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        source = samples / self.sample
        if self.untouched:
            target.write_bytes(source.read_bytes())
            return target
        image = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if self.scale != 1.0:
            image = cv2.resize(image, self._resized_size(image.shape), interpolation=cv2.INTER_CUBIC)
        if self.crop:
            x, y, width, height = self.crop
            image = image[y : y + height, x : x + width]
        if not cv2.imwrite(str(target), _styled(image, self.style)):
            raise OSError(f"OpenCV could not write {target}")
        return target

    def map_points(self, points: np.ndarray, sample_shape: tuple[int, ...]) -> np.ndarray:
        """Sample-pixel (x, y) points in this photo's pixels (pixel centres map to pixel centres)."""
        mapped = np.asarray(points, np.float64).copy()
        if self.scale != 1.0:
            width, height = self._resized_size(sample_shape)
            ratio = np.array([width / sample_shape[1], height / sample_shape[0]])
            mapped = (mapped + 0.5) * ratio - 0.5
        if self.crop:
            mapped -= self.crop[:2]
        return mapped

    def _resized_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return round(shape[1] * self.scale), round(shape[0] * self.scale)


def _styled(image: np.ndarray, style: Style) -> np.ndarray:
    if style == "as is":
        return image
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if style == "grey":
        return grey  # one channel: both readers expand it to three equal ones
    if style == "sepia":
        return np.clip(grey[..., None].astype(np.int16) + SEPIA_SHIFT_BGR, 0, 255).astype(np.uint8)
    if style == "rgba":
        height, width = image.shape[:2]
        alpha = np.linspace(*ALPHA_RANGE, width).round().astype(np.uint8)
        return np.dstack([image, np.broadcast_to(alpha, (height, width))])
    offsets = np.random.default_rng(16).integers(-SIXTEEN_BIT_SPREAD, SIXTEEN_BIT_SPREAD + 1, image.shape)
    return np.clip(image.astype(np.int32) * 257 + offsets, 0, 65535).astype(np.uint16)


@dataclass(frozen=True)
class Case:
    """One row of the table: an input and the options both sides run with.

    aligned: the input is a 512 face (official `--has_aligned`, or the colorization / inpainting scripts).
    detector: with RetinaFace both sides get the faces found once in the sample by our dlib detector (random
      RetinaFace weights find nothing); with dlib each side runs its own.
    paste_as_ours: the official paste-back gets our paste offset, centred fade and grey-face clipping
      (official_runner.py), so the row shows whether everything else matches; rows with False measure those.
    compared: "all pixels", or "outside faces" where the faces' content cannot match (their inputs differ: the
      network is chaotic under random weights) and face placement is compared instead.
    expected: the documented difference this row measures, named in the verdict; empty when it must be equal.
    expected_where: where that difference may show. "faces": pixels outside every face's square must still be
      equal, or the row is marked DIFFERS; "everywhere": no such check.
    """

    name: str
    input: CaseInput
    task: Literal["restore", "colorize", "inpaint"] = "restore"
    aligned: bool = False
    upscale: int = 1
    fidelity: float = 0.5
    detector: Literal["retinaface_resnet50", "retinaface_mobile0.25", "dlib"] = "retinaface_resnet50"
    only_center_face: bool = False
    draw_box: bool = False
    realesrgan: bool = False
    face_upsample: bool = False
    paste_as_ours: bool = True
    compared: Compared = "all pixels"
    expected: str = ""
    expected_where: Where = "faces"

    @property
    def faces_given(self) -> bool:
        return not self.aligned and self.detector != "dlib"

    def official_command(self, image: Path, output: Path) -> list[str]:
        """The official script and its arguments."""
        if self.task == "colorize":
            return ["inference_colorization.py", "-i", str(image), "-o", str(output)]
        if self.task == "inpaint":
            return ["inference_inpainting.py", "-i", str(image), "-o", str(output)]
        command = ["inference_codeformer.py", "-i", str(image), "-o", str(output), "-w", f"{self.fidelity:g}"]
        if self.aligned:
            return [*command, "--has_aligned"]
        command += ["-s", str(self.upscale), "--detection_model", self.detector]
        flags = {
            "--only_center_face": self.only_center_face,
            "--draw_box": self.draw_box,
            "--face_upsample": self.face_upsample,
        }
        command += [flag for flag, wanted in flags.items() if wanted]
        return [*command, "--bg_upsampler", "realesrgan"] if self.realesrgan else command

    def official_output(self, image: Path, output: Path) -> Path:
        if self.task != "restore":
            return output / f"{image.stem}.png"
        return output / ("restored_faces" if self.aligned else "final_results") / f"{image.stem}.png"

    def our_arguments(self) -> list[str]:
        """Our CLI's options for this case (input, output and files are added by the harness)."""
        arguments = [self.task]
        if self.task == "restore":
            arguments += ["-w", f"{self.fidelity:g}"]
        if self.aligned:
            return [*arguments, "--aligned"]
        arguments += ["-s", str(self.upscale), "--detector", self.detector]
        flags = {
            "--only-center-face": self.only_center_face,
            "--draw-box": self.draw_box,
            "--face-upsample": self.face_upsample,
        }
        arguments += [flag for flag, wanted in flags.items() if wanted]
        return [*arguments, "--bg-upsampler", "realesrgan"] if self.realesrgan else arguments


FACE_04 = CaseInput("whole/04.jpg")  # 225 x 225, one face: the official enlarges it to 512 first
FACE_05 = CaseInput("whole/05.jpg")  # 191 x 264, one face
FACE_03 = CaseInput("whole/03.jpg")  # 400 x 225, one face
FACE_04_AT_512 = CaseInput("whole/04.jpg", scale=512 / 225)  # shorter side exactly 512: no enlarging
OFFSET_CAUSE = "paste offset 0.5 px (README)"
FADE_CAUSE = "fade centred (README)"

CASES: tuple[Case, ...] = (
    Case("aligned colour", CaseInput("aligned/0240.png"), aligned=True),
    Case("aligned grey", CaseInput("gray/Hepburn02.png"), aligned=True),
    Case("aligned sepia", CaseInput("gray/067_David_Beckham_00.png", style="sepia"), aligned=True),
    Case("colorize grey", CaseInput("gray/Hepburn02.png"), task="colorize", aligned=True),
    Case("colorize RGBA", CaseInput("gray/Hepburn02.png", style="rgba"), task="colorize", aligned=True),
    Case("colorize Einstein02 (RGBA; channels 2 apart)", CaseInput("gray/Einstein02.png"), task="colorize",
         aligned=True, expected="colorize greys its input (README)", expected_where="everywhere"),
    Case("colorize sepia", CaseInput("gray/Hepburn02.png", style="sepia"), task="colorize", aligned=True,
         expected="colorize greys its input (README)", expected_where="everywhere"),
    Case("inpaint", CaseInput("masked/00169.png"), task="inpaint", aligned=True),
    Case("small x1", FACE_04),
    Case("small x1 (official fade)", FACE_04, paste_as_ours=False, expected=FADE_CAUSE),
    Case("small x2", FACE_04, upscale=2),
    Case("small x2 (official paste)", FACE_04, upscale=2, paste_as_ours=False,
         expected=f"{OFFSET_CAUSE} + {FADE_CAUSE}"),
    Case("small x3", FACE_04, upscale=3),
    Case("small x4 w=0", FACE_04, upscale=4, fidelity=0.0),
    Case("w=1", FACE_05, fidelity=1.0),
    Case("shorter side 512 x2", FACE_04_AT_512, upscale=2),
    Case("large (764x1056)", CaseInput("whole/05.jpg", scale=4.0)),
    Case("grey x2", CaseInput("whole/03.jpg", style="grey"), upscale=2),
    Case("sepia", CaseInput("whole/03.jpg", style="sepia")),
    Case("sepia (official paste)", CaseInput("whole/03.jpg", style="sepia"), paste_as_ours=False,
         expected=f"grey faces clipped before the blend + {FADE_CAUSE}"),
    Case("RGBA", CaseInput("whole/04.jpg", style="rgba")),
    Case("16-bit PNG", CaseInput("whole/03.jpg", style="16-bit"), compared="outside faces",
         expected="16-bit to 8-bit rounding (README)"),
    Case("faces at the border x2", CaseInput("whole/00.jpg", crop=(80, 95, 170, 215)), upscale=2),
    Case("only centre face (1 of 4)", CaseInput("whole/00.jpg"), only_center_face=True),
    Case("4 faces + draw box x2", CaseInput("whole/01.jpg"), upscale=2, draw_box=True),
    Case("RetinaFace MobileNet", FACE_05, detector="retinaface_mobile0.25"),
    Case("Real-ESRGAN bg + face upsample x2", FACE_04_AT_512, upscale=2, realesrgan=True, face_upsample=True),
    Case("Real-ESRGAN bg (input below 512)", FACE_04, upscale=2, realesrgan=True),
    Case("face upsample x1", FACE_05, face_upsample=True, compared="outside faces",
         expected="no face upsampling at x1 (README)"),
    Case("dlib", FACE_03, detector="dlib", compared="outside faces",
         expected="dlib gets RGB (README)"),
)
"""Every case, in the order the table lists them."""

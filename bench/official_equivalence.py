"""Equivalence with the official CodeFormer scripts (issue 20): both sides run on the same inputs with the same
generated weights, and a table says per case how far apart the outputs are and why.

    .venv/bin/python bench/official_equivalence.py --official DIR [--cases NAME,...] [--workdir DIR] [--write]
    .venv/bin/python bench/official_equivalence.py --list

Not a test (CI has no official tree). DIR is an export of the official repository, which this script prepares
in place: it writes the `basicsr/version.py` that the official `setup.py develop` would generate, and links the
generated weights (bench_weights.py, in the bench cache outside the repository) under the official names in
its `weights/` folders, so the official `load_file_from_url` finds them and downloads nothing. dlib's two model
files come from the `face_recognition_models` package.

The official code imports one package our venv lacks, `lpips` (basicsr's losses import it at package import).
It is installed once with `pip install --no-deps --target` into `--official-deps` (default: a folder in the bench
cache), never into the venv or a requirements file; that folder and the official tree come first on the official
side's PYTHONPATH, so its own `basicsr` and `facelib` win over the pip-installed basicsr.

The official side runs through official_runner.py (faces given to RetinaFace, paste geometry, dumps); our side
is our CLI (`python -m codeformer_core`) with HF_HUB_OFFLINE=1. Cases are in equivalence_cases.py, comparisons
and verdicts in equivalence_compare.py. Random RetinaFace weights find no face, so the faces of each sample
photo are found once by our CLI's dlib detector and given to both sides (`--faces-from`, and the runner).
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch
from bench_weights import default_cache_dir, ensure_equivalence_weights
from equivalence_cases import CASES, FACE_04, Case
from equivalence_compare import (
    decoded_input_difference,
    diff_stats,
    dlib_landmark_shifts,
    face_footprint,
    official_levels,
    our_affines,
    paste_offset_accuracy,
    placement_px,
    sixteen_bit_read,
    verdict,
)

from codeformer_core.images import read_image
from tests.support.shared_data import samples_dir

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SAMPLES = samples_dir()
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


def main() -> int:
    args = _parse_arguments()
    selected = _select_cases(args.cases)
    if args.list:
        print("\n".join(case.name for case in CASES))
        return 0
    if args.official is None:
        sys.exit("--official DIR is required (an export of the official repository; see bench/README.md)")
    started = time.perf_counter()
    weights = ensure_equivalence_weights(args.weights_dir or default_cache_dir())
    deps = args.official_deps or default_cache_dir() / "official-deps"
    official = args.official.resolve()
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


# ---------------------------------------------------------------- the official side


def prepare_official_tree(tree: Path, weights: Path) -> None:
    """Make an exported official tree runnable offline: version.py, and our generated weights under its names."""
    if not (tree / "inference_codeformer.py").is_file() or not (tree / "facelib").is_dir():
        sys.exit(f"{tree} is not an exported official CodeFormer tree (no inference_codeformer.py or facelib/)")
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


def _face_recognition_models_dir() -> Path:
    """Found without importing the package (its __init__ needs pkg_resources, gone from current setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the dlib cases need the face_recognition_models package in this venv")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def ensure_official_dependencies(folder: Path) -> None:
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


# ---------------------------------------------------------------- our side


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


# ---------------------------------------------------------------- one case


def run_case(case: Case, work: Path, tree: Path, deps: Path, weights: Path, faces: dict[str, list[dict]]) -> dict:
    folder = work / "cases" / re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-")
    folder.mkdir(parents=True, exist_ok=True)
    image = case.input.write(SAMPLES, work / "inputs")
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


# ---------------------------------------------------------------- measurements and the table


def measurements(work: Path, faces: dict[str, list[dict]]) -> dict:
    """The measurements that need no official run."""
    photo = FACE_04.write(SAMPLES, work / "inputs")
    landmarks = np.asarray(faces[FACE_04.sample][0]["landmarks"], np.float64)
    sixteen_bit = next(case.input for case in CASES if case.input.style == "16-bit")
    dlib_photo = next(case.input for case in CASES if case.detector == "dlib")
    return {
        "offset": paste_offset_accuracy(photo, landmarks, OFFSET_UPSCALES),
        "sixteen_bit": sixteen_bit_read(sixteen_bit.write(SAMPLES, work / "inputs")),
        "dlib": dlib_landmark_shifts(dlib_photo.write(SAMPLES, work / "inputs")),
    }


def render(rows: list[dict], extras: dict, minutes: float, official: Path) -> str:
    commit_file = official / COMMIT_FILE
    commit = commit_file.read_text().strip() if commit_file.is_file() else "unknown (no .official-commit file)"
    header = (
        f"Run {date.today().isoformat()} on {_machine()}, torch {torch.__version__}, official commit {commit};"
        f" {minutes:.1f} minutes. Generated weights (bench_weights.py): faces restored by random-but-fixed"
        " networks, so a face's content is chaotic; bench/README.md says how to read this table."
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


def _machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = names[0].strip() if names else model
    return f"{model} ({os.cpu_count()} cores, {platform.system()})"


if __name__ == "__main__":
    sys.exit(main())

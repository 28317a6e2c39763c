"""Command line: `python -m codeformer_core {restore,colorize,inpaint} INPUT... -o OUTDIR`, `download` and
`export onnx`.

Inputs are photos, videos (written as OUTDIR/<stem>.mp4) or folders of either. Exit code 0 only when every input
succeeded; each failed input gets one line on stderr.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .cluster.arguments import add_cluster_arguments
from .commands.download import add_download_arguments, run_download
from .commands.engine_arguments import add_engine_arguments, with_overrides
from .commands.export import add_export_arguments, run_export
from .errors import CodeFormerError, InvalidOptionError
from .faces.detection import DetectedFace, faces_from_report
from .files import write_report
from .images import encode_png, read_image
from .inputs import VIDEO_SUFFIXES, collect_inputs, nothing_found
from .layouts import TASKS, Mask
from .options import (
    BACKGROUNDS,
    DETECTORS,
    MAX_UPSCALE,
    FaceFidelities,
    RestoreOptions,
    parse_face_fidelities,
    parse_face_indices,
)
from .pipeline import Pipeline, RestoreRequest
from .settings import Settings
from .video import restore_video


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m codeformer_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for task in TASKS:
        _add_task_arguments(commands.add_parser(task, help=f"{task} faces in photos"), task)
    add_download_arguments(commands.add_parser("download", help="fetch the pretrained files ahead of time"))
    add_export_arguments(commands.add_parser("export", help="write a network as an ONNX file, w as an input"))
    return parser


def _add_task_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="photos, videos, or folders of them")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the results (PNG, mp4)")
    if task == "restore":
        parser.add_argument("-w", "--fidelity", type=float, default=0.5,
                            help="0 = best quality, 1 = closest to the input (default 0.5)")
        parser.add_argument("--face-fidelity", action="append", default=[], metavar="FACE=W",
                            help="give one face its own w, e.g. 1=0.8 (repeat, or 1=0.8,2=0.3); faces are numbered"
                            " as the --json report lists them, from 0; photos only")
    if task == "inpaint":
        parser.add_argument("--mask", type=Path,
                            help="mask image (white = hole); without it, pure-white pixels of the input are the holes")
    parser.add_argument("--aligned", action="store_true", help="inputs are 512x512 faces aligned to the FFHQ template")
    parser.add_argument("-s", "--upscale", type=int, default=2,
                        help=f"final upscale of the whole image, 1-{MAX_UPSCALE}")
    parser.add_argument("--bg-upsampler", choices=BACKGROUNDS, default="none", help="background upsampler")
    parser.add_argument("--face-upsample", action="store_true", help="also upsample the restored faces")
    parser.add_argument("--detector", choices=DETECTORS, default="retinaface_resnet50")
    parser.add_argument("--only-center-face", action="store_true")
    parser.add_argument("--draw-box", action="store_true", help="draw the detected face boxes")
    parser.add_argument("--no-parse", action="store_true", help="paste faces back with a plain mask, not a parse mask")
    parser.add_argument("--exact", action="store_true",
                        help="float32 through the whole network, within the official code's golden bounds (slower); by "
                        "default the decoder and face parser run in bf16 where the device has it natively")
    add_engine_arguments(parser)
    parser.add_argument("--json", type=Path, help="write the per-image reports to this JSON file")
    parser.add_argument("--faces", metavar="0,1,3",
                        help="restore only these faces (numbered as the --json report lists them, from 0); the"
                        " others keep their original pixels; photos only")
    parser.add_argument("--faces-from", type=Path, metavar="REPORT",
                        help="use the faces listed in an earlier --json report (or one in its format) instead of"
                        " detecting them; photos only")
    add_cluster_arguments(parser)


def options_from(args: argparse.Namespace) -> RestoreOptions:
    own_fidelities: FaceFidelities = tuple(
        pair for text in getattr(args, "face_fidelity", []) for pair in parse_face_fidelities(text, "--face-fidelity")
    )
    return RestoreOptions(
        task=args.command,
        fidelity=getattr(args, "fidelity", 0.5),
        upscale=args.upscale,
        aligned=args.aligned,
        background=args.bg_upsampler,
        face_upsample=args.face_upsample,
        detector=args.detector,
        only_center_face=args.only_center_face,
        draw_boxes=args.draw_box,
        parse_paste=not args.no_parse,
        exact=args.exact,
        only_faces=None if args.faces is None else parse_face_indices(args.faces, "--faces"),
        face_fidelities=own_fidelities,
    )


def run_task(args: argparse.Namespace, settings: Settings) -> int:
    options = options_from(args)
    mask = read_image(args.mask).bgr[..., 0].astype("float32") / 255.0 if getattr(args, "mask", None) else None
    _check_destinations(args.output, args.json)
    settings = with_overrides(settings, args)
    if args.ray is not None:
        from .cluster.job import run_on_cluster  # Ray is an optional extra, imported only when asked for

        return run_on_cluster(args, options, settings, mask)
    if args.faces_from and args.aligned:
        raise InvalidOptionError("--faces-from and --aligned exclude each other: an aligned face needs no landmarks.")
    given = _read_faces_report(args.faces_from) if args.faces_from else None
    pipeline = Pipeline.from_settings(settings, device=args.device)
    files, errors = collect_inputs(args.inputs)
    if not files and not errors:
        errors.append(nothing_found(args.inputs))
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidOptionError(f"-o {args.output}: the output folder cannot be made ({error}).") from error
    reports = {}
    for path in tqdm(files, desc=options.task, unit="file", disable=len(files) < 2):
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                if given is not None:
                    raise InvalidOptionError("--faces-from applies to photos, not videos.")
                reports[str(path)] = _restore_video_file(pipeline, path, options, args.output)
            else:
                faces = None if given is None else _faces_for(given, path, args.faces_from)
                reports[str(path)] = _restore_image_file(pipeline, path, options, mask, faces, args.output)
        except CodeFormerError as error:
            errors.append(f"{path}: {error}")
        except OSError as error:  # its result could not be written (a full disk, a folder in its way): go on
            errors.append(f"{path}: {error}")
    if args.json and (unwritten := write_report(args.json, reports)):
        errors.append(unwritten)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    return 1 if errors else 0


def _check_destinations(output: Path, report: Path | None) -> None:
    """Refuse, before any work, an output folder that is a file and a --json report whose folder does not exist."""
    if output.exists() and not output.is_dir():
        raise InvalidOptionError(f"-o {output}: that is a file, not a folder; name a folder for the results.")
    if report is not None and not report.parent.is_dir():
        raise InvalidOptionError(f"--json {report}: the folder {report.parent} does not exist.")
    if report is not None and report.is_dir():
        raise InvalidOptionError(f"--json {report}: that is a folder; name the file to write the reports to.")


def _read_faces_report(path: Path) -> dict[str, Any]:
    try:
        reports = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidOptionError(f"--faces-from {path}: not a readable JSON report ({error}).") from error
    if not isinstance(reports, dict):
        raise InvalidOptionError(f"--faces-from {path}: expected an object mapping photo paths to their reports.")
    return reports


def _faces_for(reports: dict[str, Any], path: Path, source: Path) -> list[DetectedFace]:
    """The faces the report lists for `path`, matched by the path as given, else by file name."""
    entry = reports.get(str(path))
    if entry is None:
        named = [key for key in reports if Path(key).name == path.name]
        if len(named) > 1:
            raise InvalidOptionError(
                f"--faces-from {source} lists several photos named {path.name} ({', '.join(named)}); give the input"
                " by the path the report uses."
            )
        entry = reports[named[0]] if named else None
    if entry is None:
        raise InvalidOptionError(f"--faces-from {source} lists no faces for {path.name}.")
    return faces_from_report(entry.get("faces") if isinstance(entry, dict) else entry, f"{source} ({path.name})")


def _restore_image_file(
    pipeline: Pipeline,
    path: Path,
    options: RestoreOptions,
    mask: Mask | None,
    faces: list[DetectedFace] | None,
    output_dir: Path,
) -> dict[str, Any]:
    result = pipeline.run(RestoreRequest(read_image(path), options, mask, None if faces is None else tuple(faces)))
    # The CLI runs on the user's own files, so their names are safe to reuse for the outputs.
    written = output_dir / f"{path.stem}.png"
    written.write_bytes(encode_png(result.image))
    for line in result.report.notices + result.report.adjustments:
        tqdm.write(f"{path.name}: {line}")
    tqdm.write(f"{path} -> {written} ({result.report.faces_restored} face(s))")
    return {"output": str(written), **result.report.to_dict()}


def _restore_video_file(pipeline: Pipeline, path: Path, options: RestoreOptions, output_dir: Path) -> dict[str, Any]:
    with tqdm(desc=path.name, unit="frame", leave=False) as bar:

        def show(done: int, total: int | None, _seconds_left: float | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = restore_video(path, output_dir / f"{path.stem}.mp4", pipeline, options, progress=show)
    for line in result.notes:
        tqdm.write(f"{path.name}: {line}")
    tqdm.write(f"{path} -> {result.output} ({result.frames} frames, {result.faces_restored} face(s))")
    return result.to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "download":
            return run_download(args, settings)
        if args.command == "export":
            return run_export(args, settings)
        return run_task(args, settings)
    except CodeFormerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

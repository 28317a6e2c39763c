"""The Photo tab's face-by-face controls: which faces to restore, one face's own fidelity, and that face side by side
at several w.

Every change re-renders the last photo from what the pipeline kept of it, so usually leaving a face out or putting
it back runs only the paste-back, a face's new w decodes that face alone, and the comparison encodes nothing the run
has not already encoded (on ZeroGPU a call's process is not always the one that kept it: see `zerogpu.py`).
Faces are numbered from 0, as the report, the API and the CLI number them.
"""

from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from codeformer_core.images import write_png
from codeformer_core.options import FaceFidelities, RestoreOptions
from codeformer_core.pipeline import SWEEP_FIDELITIES
from codeformer_core.report import FidelitySweep, Report

COMPARE_LABEL = "Compare w = " + ", ".join(f"{w:g}" for w in SWEEP_FIDELITIES)


class FacePanel(NamedTuple):
    """The panel's widgets that handlers update, by name (see `panel_updates`)."""

    panel: Any  # the whole panel, shown once a run has found faces
    faces_to_restore: Any  # CheckboxGroup of face indices
    face_to_adjust: Any  # Radio of face indices; clicking a face in the gallery picks it too
    fidelity_controls: Any  # the chosen face's slider, comparison button and comparison: restore only
    face_fidelity: Any  # Slider: the chosen face's own w
    sweep: Any  # Gallery: the chosen face at each w of SWEEP_FIDELITIES; picking one gives the face that w


def build_face_panel() -> tuple[FacePanel, gr.Button]:
    """The panel's widgets (hidden until a run finds faces) and its comparison button; call inside a gr.Blocks."""
    with gr.Group(visible=False) as panel:
        faces_to_restore = gr.CheckboxGroup(
            label="Faces to restore", elem_id="faces-to-restore",
            info="Untick a face to keep its original pixels: usually only the paste-back runs again.",
        )  # fmt: skip
        face_to_adjust = gr.Radio(label="Face to adjust (or click it above)", elem_id="face-to-adjust")
        with gr.Column() as fidelity_controls:
            face_fidelity = gr.Slider(
                0, 1, value=0.5, step=0.05, label="Its fidelity (w)", elem_id="face-fidelity",
                info="This face's own w: only this face is decoded again.",
            )  # fmt: skip
            compare = gr.Button(COMPARE_LABEL, elem_id="compare")
            sweep = gr.Gallery(label="Pick one to use its w", columns=len(SWEEP_FIDELITIES), height=150,
                               allow_preview=False, interactive=False, elem_id="sweep")  # fmt: skip
    return FacePanel(panel, faces_to_restore, face_to_adjust, fidelity_controls, face_fidelity, sweep), compare


def panel_updates(options: RestoreOptions, report: Report, chosen: int) -> dict[str, Any]:
    """What the panel shows after a render with `options`, face `chosen` picked for adjusting (sweep left out:
    only a new photo clears it)."""
    indices = [(f"Face {index}", index) for index in range(len(report.faces))]
    return {
        "panel": gr.update(visible=bool(report.faces)),
        "faces_to_restore": gr.update(
            choices=indices, value=[index for index, face in enumerate(report.faces) if face.restored]
        ),
        "face_to_adjust": gr.update(choices=indices, value=chosen),
        "fidelity_controls": gr.update(visible=options.task == "restore"),
        "face_fidelity": face_fidelity_update(options, chosen),
    }


def face_fidelity_update(options: RestoreOptions, face: int) -> dict[str, Any]:
    return gr.update(value=own_fidelity(options, face), label=f"Fidelity of face {face} (w)")


def own_fidelity(options: RestoreOptions, face: int) -> float:
    """The w face `face` is restored at when restored: its own, else the photo's."""
    return dict(options.face_fidelities).get(face, options.fidelity)


def with_own_fidelity(options: RestoreOptions, face: int, w: float) -> FaceFidelities:
    """The options' per-face fidelities with face `face` at w; a face at the photo's w has no entry of its own, so it
    follows the main slider."""
    own = dict(options.face_fidelities)
    own[face] = w
    return tuple((index, value) for index, value in own.items() if value != options.fidelity)


def face_captions(report: Report) -> list[str]:
    """The gallery's caption of each face: its index, and its own w or that it kept its original pixels."""
    captions = []
    for index, face in enumerate(report.faces):
        if not face.restored:
            captions.append(f"Face {index} (kept original)")
        elif face.fidelity != report.fidelity:
            captions.append(f"Face {index} (w={face.fidelity:g})")
        else:
            captions.append(f"Face {index}")
    return captions


def sweep_gallery(sweep: FidelitySweep, directory: Path) -> dict[str, Any]:
    """The comparison as the gallery shows it: each face with its w, the time taken in the label."""
    items = [
        (str(write_png(face, directory, f"face{sweep.face_index}-w{w:g}")), f"w = {w:g}")
        for face, w in zip(sweep.faces, sweep.fidelities, strict=True)
    ]
    return gr.update(value=items, label=f"{sweep.summary()} Pick one to use its w.")

"""The option widgets every tab and endpoint shares, and the one place their values become `RestoreOptions`.

Gradio names an endpoint's parameters after its handler's, so each option must stay a parameter of its own on every
handler that takes it. `takes_options` writes them there: a handler declares one `options: OptionValues` parameter
and Gradio sees upscale, aligned, ... exact in its place (the API page and `gradio_client` call them by name).
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import gradio as gr

from codeformer_core.options import DETECTORS, MAX_UPSCALE, RestoreOptions

from .running import user_errors

F = TypeVar("F", bound=Callable[..., Any])


class OptionValues(NamedTuple):
    """The options every task shares, as the widgets give them; their defaults are the API's."""

    upscale: int = 2
    aligned: bool = False
    background_enhance: bool = False
    face_upsample: bool = False
    detector: str = DETECTORS[0]
    only_center_face: bool = False
    exact: bool = False

    def restore_options(self, task: str, fidelity: float, **more: Any) -> RestoreOptions:
        """Validated options (`more`: face choices); an out-of-range value becomes a gr.Error naming it. Only
        restore reads fidelity."""
        with user_errors():
            return RestoreOptions(
                task=task,
                fidelity=fidelity,
                upscale=self.upscale,
                aligned=bool(self.aligned),
                background="realesrgan" if self.background_enhance else "none",
                face_upsample=bool(self.face_upsample),
                detector=self.detector,
                only_center_face=bool(self.only_center_face),
                exact=bool(self.exact),
                **more,
            )


def option_widgets(prefix: str | None, *, aligned: bool = True, upscale: int = 2) -> list[gr.components.Component]:
    """The page's option widgets in `OptionValues` order, elem_ids `<prefix>-...` (unique on the page; no prefix for
    the Photo tab). aligned=False leaves that checkbox out (a video frame is never an aligned crop); the handler's
    `takes_options(without=("aligned",))` then takes its default."""

    def elem_id(name: str) -> str:
        return f"{prefix}-{name}" if prefix else name

    widgets = {
        "upscale": gr.Slider(1, MAX_UPSCALE, value=upscale, step=1, precision=0, label="Upscale the whole picture",
                             info="Ignored for an aligned face.", elem_id=elem_id("upscale")),
        "aligned": gr.Checkbox(False, label="Aligned face", info="A 512x512 face aligned like FFHQ: skip detection.",
                               elem_id=elem_id("aligned")),
        "background_enhance": gr.Checkbox(False, label="Enhance the background (Real-ESRGAN)",
                                          elem_id=elem_id("background-enhance")),
        "face_upsample": gr.Checkbox(False, label="Upsample the restored faces (Real-ESRGAN)",
                                     elem_id=elem_id("face-upsample")),
        "detector": gr.Dropdown(list(DETECTORS), value=DETECTORS[0], label="Face detector",
                                elem_id=elem_id("detector")),
        "only_center_face": gr.Checkbox(False, label="Only the face nearest the centre",
                                        elem_id=elem_id("only-center-face")),
        "exact": gr.Checkbox(False, label="Exact float32 (slower)", elem_id=elem_id("exact"),
                             info="Bit-faithful to the official code. Off, the decoder runs in bf16 where this machine "
                                  "computes it natively; the faces keep the same codes either way."),
    }  # fmt: skip
    return [widget for name, widget in widgets.items() if aligned or name != "aligned"]


def api_option_widgets() -> list[gr.components.Component]:
    """Hidden widgets for the API endpoints, labelled with the parameter names: they only give the endpoints their
    types and defaults."""
    defaults = OptionValues()
    return [
        gr.Slider(1, MAX_UPSCALE, value=defaults.upscale, step=1, precision=0, label="upscale"),
        gr.Checkbox(defaults.aligned, label="aligned"),
        gr.Checkbox(defaults.background_enhance, label="background_enhance"),
        gr.Checkbox(defaults.face_upsample, label="face_upsample"),
        gr.Dropdown(list(DETECTORS), value=defaults.detector, label="detector"),
        gr.Checkbox(defaults.only_center_face, label="only_center_face"),
        gr.Checkbox(defaults.exact, label="exact"),
    ]


def takes_options(*, without: tuple[str, ...] = (), last: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Give a handler with an `options: OptionValues` parameter one parameter per option in its place, as Gradio
    needs them. without: options the handler's widgets leave out (their defaults apply). last: options that come
    after the handler's other parameters instead (with their defaults: an option added after clients were written,
    which they do not pass)."""

    def decorate(handler: F) -> F:
        names = [name for name in OptionValues._fields if name not in without]
        defaults = OptionValues()

        def parameter(name: str, with_default: bool) -> inspect.Parameter:
            default = getattr(defaults, name) if with_default else inspect.Parameter.empty
            return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                     annotation=type(getattr(defaults, name)))

        parameters = list(inspect.signature(handler).parameters.values())
        at = [p.name for p in parameters].index("options")
        rest = [p for p in parameters[at + 1 :] if p.name != "progress"]
        progress = [p for p in parameters[at + 1 :] if p.name == "progress"]
        exposed = inspect.signature(handler).replace(parameters=[
            *parameters[:at], *(parameter(name, False) for name in names if name not in last), *rest,
            *(parameter(name, True) for name in last), *progress,
        ])  # fmt: skip

        @functools.wraps(handler)
        def with_options(*args: Any, **kwargs: Any) -> Any:
            bound = exposed.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            values = OptionValues(**{name: given.pop(name) for name in names})
            return handler(**given, options=values)

        with_options.__signature__ = exposed  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in exposed.parameters.values()
                                        if p.annotation is not inspect.Parameter.empty}
        return with_options  # type: ignore[return-value]

    return decorate

"""Stage 3 of a run: each face to restore at its own fidelity, decoded (unless an earlier run decoded it at that w),
then what the official code does to its faces."""

from collections.abc import Callable

from ..faces.gray import gray_like_input, to_gray
from ..faces.inpaint import keep_outside_holes
from ..layouts import FaceCrop
from ..network.batches import decode_faces
from ..network.precision import Precision
from ..options import RestoreOptions
from .cache import PreparedFaces
from .device_runs import DeviceRuns
from .models import Models
from .state import RunState


class DecodeStage:
    """models: CodeFormer and the face upsampler; runs: the device's network runs; precision: what the decoder
    runs at for a run's options."""

    def __init__(self, models: Models, runs: DeviceRuns, precision: Callable[[RestoreOptions], Precision]) -> None:
        self.models = models
        self.runs = runs
        self.precision = precision

    def finished_faces(
        self, state: RunState, prepared: PreparedFaces, wanted: list[tuple[int, float]]
    ) -> list[FaceCrop]:
        """Face `index` at w for each (index, w) in `wanted`, as it will be pasted: kept from an earlier run of this
        image, or decoded now (one decoder pass per w, over the faces that need it)."""
        upsample = state.upscale if state.options.face_upsample and state.upscale > 1 else 1
        keys = [(index, w, upsample) for index, w in wanted]
        found = {key: prepared.finished.get(key) for key in keys}
        kept = sorted({index for (index, _, _), face in found.items() if face is not None})
        if kept:
            state.report.reused.append(f"decoded face{'s' if len(kept) > 1 else ''} {', '.join(map(str, kept))}")
        missing: dict[float, list[int]] = {}
        for index, w, _ in (key for key, face in found.items() if face is None):
            missing.setdefault(w, []).append(index)
        for w, indices in missing.items():
            for index, face in self._decoded(state, prepared, indices, w).items():
                found[index, w, upsample] = face
                prepared.finished.put((index, w, upsample), face)
        prepared.finished.trim(in_use=set(keys))
        return [found[key] for key in keys]

    def _decoded(
        self, state: RunState, prepared: PreparedFaces, indices: list[int], w: float
    ) -> dict[int, FaceCrop]:
        """The faces at `indices` through the decoder at w, then what the official code does to its faces."""
        options = state.options
        net = self.models.codeformer(options.task)
        precision = self.precision(options)
        with state.clock.stage("decode", f"Decoding {len(indices)} face(s) at fidelity {w:g}"):
            order, encoded = prepared.encoded_faces(indices)
            faces = self.runs.run(
                lambda batch: decode_faces(net, encoded, fidelity=w, precision=precision, batch=batch)
            )
        crops = [prepared.crops[index] for index in order]
        if prepared.face_holes is not None:
            faces = keep_outside_holes(faces, crops, [prepared.face_holes[index] for index in order])
        if state.working.is_gray and options.task == "restore":
            faces = [gray_like_input(face, crop) for face, crop in zip(faces, crops, strict=True)]
        elif state.working.is_gray and options.task == "inpaint" and not options.aligned:
            # Our whole-photo inpaint keeps a grey photo grey; the official inpaint script (aligned faces only)
            # leaves the network's colours, and the crop's white holes would skew the tint matching.
            faces = [to_gray(face) for face in faces]
        if options.face_upsample and state.upscale > 1:
            upsampler = self.models.upsampler(progress=state.clock.download_progress)
            with state.clock.stage("face upsample", "Upsampling faces"):
                faces = [upsampler.upsample(face, outscale=state.upscale) for face in faces]
        return dict(zip(order, faces, strict=True))

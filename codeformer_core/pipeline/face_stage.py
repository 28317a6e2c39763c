"""Stage 2 of a run: the image's faces found, aligned and encoded (the network's w-independent half), or taken from
what an earlier run of the same image kept."""

import numpy as np

from ..faces.alignment import FFHQ_TEMPLATE_512, align_faces, estimate_alignment
from ..faces.detection import DetectedFace, select_faces
from ..faces.gray import to_gray
from ..faces.inpaint import warp_mask_to_faces, whiten_holes
from ..layouts import FACE_SIZE
from ..network import EncodedFaces
from ..network.batches import encode_faces
from ..report import face_report
from .cache import PreparedCache, PreparedFaces, prepared_key
from .device_runs import DeviceRuns
from .models import Models
from .state import RunState, scaled_face


class FaceStage:
    """models: the detector and CodeFormer; prepared: what earlier runs kept, per image; runs: the device's network
    runs; max_faces: the most faces one image may have restored (the largest are kept)."""

    def __init__(self, models: Models, prepared: PreparedCache, runs: DeviceRuns, max_faces: int) -> None:
        self.models = models
        self.prepared = prepared
        self.runs = runs
        self.max_faces = max_faces

    def prepare(self, state: RunState) -> PreparedFaces:
        """The image's faces found and aligned (not yet encoded), or as an earlier run of this image left them."""
        options = state.options
        key = prepared_key(state.working.bgr, state.holes, options, state.given)
        prepared = self.prepared.get(key)
        if prepared is not None:
            if not options.aligned:
                state.report.reused.append("face detection and alignment")
        else:
            detected = [_whole_crop_face()] if options.aligned else self._detect(state)
            with state.clock.stage("align", "Aligning faces"):
                affines = [] if options.aligned else [estimate_alignment(face.landmarks) for face in detected]
                crops = [state.working.bgr] if options.aligned else align_faces(state.working.bgr, affines)
                face_holes = None
                if state.holes is not None:
                    face_holes = [state.holes] if options.aligned else warp_mask_to_faces(state.holes, affines)
            prepared = PreparedFaces(detected, affines, crops, face_holes)
            self.prepared.put(key, prepared)
        state.report.faces = [
            face_report(face.box / state.scale, face.landmarks / state.scale, face.score)
            for face in prepared.detected
        ]
        if not prepared.detected:
            state.report.notices.append("No face was found in this image; it was only upscaled.")
        return prepared

    def fidelities(self, state: RunState, prepared: PreparedFaces) -> dict[int, float]:
        """Face index -> w for the faces to restore; the report says which w each face got (None: kept
        original). A choice naming a face the image does not have is refused here, before any network runs."""
        plan = state.options.face_fidelity_plan(len(prepared.detected))
        for face, w in zip(state.report.faces, plan, strict=True):
            face.restored, face.fidelity = w is not None, w
        return {index: w for index, w in enumerate(plan) if w is not None}

    def encode(self, state: RunState, prepared: PreparedFaces, indices: list[int]) -> None:
        """The network's w-independent half for the faces at `indices` that no earlier run encoded, on the crops
        as the task's network takes them."""
        options = state.options
        missing = [index for index in indices if index not in prepared.encoded_indices]
        if indices and not missing:
            state.report.reused.append("the encoded face" if options.aligned else "encoded faces")
        if not missing:
            return
        crops = [prepared.crops[index] for index in missing]
        if options.task == "colorize":
            crops = [to_gray(crop) for crop in crops]
        if prepared.face_holes is not None:
            holes = [prepared.face_holes[index] for index in missing]
            crops = [whiten_holes(crop, hole) for crop, hole in zip(crops, holes, strict=True)]
        with state.clock.stage("load network", "Loading CodeFormer"):
            net = self.models.codeformer(options.task, progress=state.clock.download_progress)

        def encode(batch: int) -> list[tuple[tuple[int, ...], EncodedFaces]]:
            parts = encode_faces(net, crops, adain=options.adain, batch=batch)
            held = [tuple(missing[start : start + batch]) for start in range(0, len(missing), batch)]
            return list(zip(held, parts, strict=True))

        with state.clock.stage("encode", f"Encoding {len(crops)} face(s)"):
            prepared.encoded.extend(self.runs.run(encode))

    def _detect(self, state: RunState) -> list[DetectedFace]:
        """The faces to restore, in working pixels: the ones given, or the detector's (run on the photo before a
        small photo's enlargement), filtered as the official code filters them and capped at `max_faces`."""
        options, clock = state.options, state.clock
        if state.given is None:
            with clock.stage("load detector", "Loading the face detector"):
                detector = self.models.detector(options.detector, progress=clock.download_progress)
        with clock.stage("detect", "Finding faces" if state.given is None else "Taking the faces given"):
            if state.given is None:
                found = [scaled_face(face, state.enlarged) for face in detector.detect(state.detection_bgr)]
            else:
                found = state.given
            detected = select_faces(
                found, state.working.bgr.shape, only_center_face=options.only_center_face, max_faces=self.max_faces
            )
        if len(found) > len(detected) and not options.only_center_face:
            state.report.adjustments.append(
                f"{len(found)} faces were found; the {len(detected)} largest were processed (limit {self.max_faces})."
            )
        return detected


def _whole_crop_face() -> DetectedFace:
    """An aligned input is itself the face, its landmarks where the template puts them."""
    return DetectedFace(
        box=np.array([0, 0, FACE_SIZE, FACE_SIZE], np.float32),
        landmarks=np.asarray(FFHQ_TEMPLATE_512, np.float32),
        score=1.0,
    )

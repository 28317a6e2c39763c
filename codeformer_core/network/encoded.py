"""What `CodeFormer.encode` hands to `CodeFormer.decode`: the part of a run that does not depend on w."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..layouts import Task
    from .precision import Precision


@dataclass(frozen=True)
class EncodedFaces:
    """N encoded faces, float32 (except `idx`), on one device, detached from autograd.

    Keep it to re-decode the same faces at another fidelity w: only the generator runs again.
    """

    quant_feat: Tensor
    """N x 256 x 16 x 16: the looked-up codebook features, after AdaIN when it was asked for."""
    skips: dict[int, Tensor]
    """Resolution -> N x C x r x r encoder features, one per CFT block (used when w > 0)."""
    logits: Tensor
    """N x 256 x codebook_size: transformer logits, tokens row-major over the 16x16 latent."""
    idx: Tensor
    """N x 256, int64: the code chosen for each token (top-1 of the logits)."""
    lq_feat: Tensor
    """N x 256 x 16 x 16: the encoder's latent, before the transformer."""

    def __len__(self) -> int:
        return self.idx.shape[0]

    def select(self, faces: int | slice | Sequence[int] | Tensor) -> "EncodedFaces":
        """The subset `faces` (an index, a slice, or a list/tensor of indices), keeping the batch dimension."""
        if isinstance(faces, int):
            if not -len(self) <= faces < len(self):
                raise IndexError(f"face {faces} is out of range for {len(self)} encoded faces")
            faces = slice(faces, faces + 1 or None)
        elif not isinstance(faces, slice):
            faces = torch.as_tensor(faces, dtype=torch.long, device=self.idx.device)
        return self._map(lambda t: t[faces])

    __getitem__ = select

    def to(self, device: torch.device | str) -> "EncodedFaces":
        """The same faces on `device`."""
        return self._map(lambda t: t.to(device))

    def clone(self) -> "EncodedFaces":
        """The same faces in memory of their own, each tensor in its layout."""
        return self._map(torch.clone)

    def _map(self, change: Callable[[Tensor], Tensor]) -> "EncodedFaces":
        return EncodedFaces(
            quant_feat=change(self.quant_feat),
            skips={res: change(feat) for res, feat in self.skips.items()},
            logits=change(self.logits),
            idx=change(self.idx),
            lq_feat=change(self.lq_feat),
        )


class FaceNetwork(Protocol):
    """What runs CodeFormer for the pipeline: the torch network (`CodeFormer`) or the exported graphs run by ONNX
    Runtime (`export.runtime.OnnxRuntimeCodeFormer`). Faces are N x 3 x 512 x 512 float32 RGB in [-1, 1] on
    `device`; `decode` re-runs only the w-dependent half."""

    @property
    def task(self) -> "Task": ...

    @property
    def device(self) -> torch.device: ...

    def encode(self, x: Tensor, adain: bool = True, precision: "Precision" = "float32") -> EncodedFaces: ...

    def decode(self, encoded: EncodedFaces, w: float, precision: "Precision" = "float32") -> Tensor: ...

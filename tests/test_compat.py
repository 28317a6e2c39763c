"""Private and version-specific APIs: each is found by a capability check, and without it the plain path runs."""

import sys
import types

import torch

from codeformer_core import compat


def test_without_the_mkldnn_probe_reduced_precision_is_not_native(monkeypatch):
    monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())

    assert compat.cpu_has_native_bf16() is False


def test_a_failing_mkldnn_probe_means_not_native(monkeypatch):
    def missing_operator() -> bool:
        raise RuntimeError("No such operator mkldnn::_is_mkldnn_bf16_supported")

    monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace(_is_mkldnn_bf16_supported=missing_operator))

    assert compat.cpu_has_native_bf16() is False


def test_nnpack_that_does_not_run_on_this_cpu_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.backends.nnpack, "is_available", lambda: False)

    assert compat.nnpack_available() is False


def test_the_torchvision_alias_gives_basicsr_its_grayscale_function(monkeypatch):
    import torchvision.transforms.functional as functional

    monkeypatch.delitem(sys.modules, "torchvision.transforms.functional_tensor", raising=False)

    compat.register_torchvision_alias()

    alias = sys.modules["torchvision.transforms.functional_tensor"]
    assert alias.rgb_to_grayscale is functional.rgb_to_grayscale

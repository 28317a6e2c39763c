"""Modules of a loaded network replaced in place by subclasses that compute the same thing another way."""

from collections.abc import Callable

import torch
from torch import nn


def swap_modules(module: nn.Module, suits: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace, in place, every module inside `module` for which `suits` holds by `make(child)`, which takes over
    the child's parameters and its train/eval mode; returns how many were replaced.

    `make` is called on the meta device (no throwaway initialisation) and must build a module with the child's
    parameter names; the parameters are then the child's own tensors, shared, not copied.
    """
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if suits(child):
                with torch.device("meta"):
                    replacement = make(child)
                for key, parameter in child.named_parameters(recurse=False):
                    setattr(replacement, key, parameter)
                setattr(parent, name, replacement.train(child.training))
                swapped += 1
    return swapped

"""Checks of single values every layer of the engine shares, each refusing in one line that names the value."""

from collections.abc import Sequence
from numbers import Real

from .errors import InvalidOptionError

TRUE_WORDS = {"1", "ON", "YES", "TRUE", "T"}


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """InvalidOptionError naming `name`, the choices and the value when `value` is not one of `choices`."""
    if value not in choices:
        raise InvalidOptionError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_fidelity(value: object, name: str = "fidelity") -> float:
    """`value` as a float when it is a number in [0, 1]; InvalidOptionError otherwise."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise InvalidOptionError(f"{name} must be a number between 0 and 1; got {value!r}")
    return float(value)


def check_face_index(index: int, count: int) -> None:
    """InvalidOptionError naming the index and the image's face count when face `index` does not exist."""
    if not 0 <= index < count:
        valid = {0: "it has none", 1: "its one face is face 0"}.get(count, f"valid indices are 0-{count - 1}")
        raise InvalidOptionError(f"There is no face {index}: this image has {count} face(s); {valid}.")


def is_true(text: str) -> bool:
    """Whether an environment variable's value means yes, as huggingface_hub reads its own flags."""
    return text.strip().upper() in TRUE_WORDS

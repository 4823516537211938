"""Argument checks shared by every stpcore package (snn imports nothing else from stpcore, so
train, prune and runs can all use these).

Every error names the function, the parameter, what is allowed and what was given.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

#: Seeds are ints in [0, MAX_SEED], the most numpy's global seed takes.
MAX_SEED = 2 ** 32 - 1


def check_arg(ok: bool, fn: str, name: str, allowed: str, got) -> None:
    """Raise ``ValueError("{fn}: `{name}` must be {allowed}; got {got!r}")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{fn}: `{name}` must be {allowed}; got {got!r}")


def is_int(value) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A finite real number (Python or numpy), not a bool or a string."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def is_positive(value) -> bool:
    """A finite real number > 0."""
    return is_real(value) and value > 0


def check_seed(name: str, value) -> int:
    """A seed: an int in [0, 2**32 - 1] (bools are not seeds); returned as a Python int."""
    if not is_int(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"`{name}` must be an int >= 0 (at most 2**32 - 1); got {value!r}")
    return int(value)

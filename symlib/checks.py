"""Argument checks shared by the configs and the functions that take sizes.

One place says what a positive integer is (not a bool, an ``int`` — or a numpy integer where the
caller allows it — and > 0) and how a refusal reads: ``<name> must be a positive integer; got <value>``;
one says the same of an integer in a range (:func:`int_in`).
"""

from __future__ import annotations

import numpy as np


def positive_int(name: str, value, high: int | None = None, numpy_ok: bool = False) -> None:
    """Refuse ``value`` unless it is an integer > 0 (and ``<= high`` when given).

    ``numpy_ok`` also accepts numpy integers (sizes computed with numpy); configs leave it off,
    because a numpy integer does not serialise to the JSON their hash is taken of."""
    types = (int, np.integer) if numpy_ok else int
    if isinstance(value, bool) or not isinstance(value, types) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high}; got {value!r}")


def int_in(name: str, value, low: int, high: int | None = None, why: str = "") -> None:
    """Refuse ``value`` unless it is an integer (not a bool) with ``low <= value`` (``<= high`` when
    given): ``<name> must be an integer >= <low>`` or ``… in <low>..<high>``, with ``why`` in
    parentheses — seeds, orders, head indices, task sizes."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an integer {allowed}{f' ({why})' if why else ''}; got {value!r}")


def part(text: str) -> tuple[int, int]:
    """``"I/K"`` -> ``(I, K)`` with ``1 <= I <= K``: the share of a grid one process runs (every K-th
    run from the I-th, for one process per core)."""
    i, slash, k = str(text).partition("/")
    if not (slash and i.isdigit() and k.isdigit() and 1 <= int(i) <= int(k)):
        raise ValueError(f"--part must be I/K with 1 <= I <= K; got {text!r}")
    return int(i), int(k)

"""Numbers as a chapter's sentences quote them, and the glue that puts them there.

A reading ("the plain transformer levels off at 0.12–0.19 …") quotes numbers computed from the
stored runs, never typed: a chapter formats them with the functions below and hands them to the
page with :func:`glue_words` (or :func:`symlib.plots.glue_text` for one), and the Markdown cell
inserts them with ``{glue:md}`key:myst```.  Used by every chapter that reads runs; first by
*Regression experiments*.
"""

from __future__ import annotations

import math

from .plots import glue_text


def f2(x: float) -> str:
    """A loss as the prose quotes it at a glance: two decimals ("0.35")."""
    return f"{x:.2f}"


def fl(x: float) -> str:
    """A loss at any scale: "0.35", "0.017", "0.004", "8e-6"."""
    if x >= 0.05:
        return f"{x:.2f}"
    if x >= 0.01:
        return f"{x:.3f}"
    if x >= 1e-3:
        return f"{x:.1g}"
    return f"{x:.0e}".replace("e-0", "e-")


def sci(x: float) -> str:
    """``x`` rounded *up* to two significant digits, "1.3e-3": a bound the prose can quote with "≤"."""
    if not x > 0:
        raise ValueError(f"sci needs a positive number, got {x!r}")
    e = math.floor(math.log10(x)) - 1
    return f"{math.ceil(round(x / 10 ** e, 6)) * 10 ** e:.1e}".replace("e-0", "e-")


def span(values, fmt: str = "{:.2f}") -> str:
    """"lo–hi" of some numbers, or one number when both ends read the same."""
    values = list(values)
    if not values:
        raise ValueError("span needs at least one number")
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def listing(items) -> str:
    """"a, b and c"."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def integer(x: float) -> str:
    """A count such as an n*, "512"; "—" where it is not known (NaN)."""
    return "—" if math.isnan(x) else str(int(x))


def times(x: float) -> str:
    """A ratio, "×5.51"; "—" where it was not computed (NaN or infinite)."""
    return f"×{x:.3g}" if math.isfinite(x) else "—"


def seed_span(seeds) -> str:
    """"seeds 0–2" for a run of consecutive seeds (three or more), else "seed 0" / "seeds 0, 2"."""
    s = sorted({int(x) for x in seeds})
    if not s:
        raise ValueError("seed_span needs at least one seed")
    if len(s) >= 3 and s == list(range(s[0], s[-1] + 1)):
        return f"seeds {s[0]}–{s[-1]}"
    return ("seed " if len(s) == 1 else "seeds ") + ", ".join(map(str, s))


def glue_words(words: dict, keys: str, prefix: str) -> None:
    """Glue the numbers a reading quotes, each as ``<prefix><key>``: ``words`` maps every key of
    ``keys`` (space-separated) to its text, or is empty — the smoke profile, or runs not all in —
    and then every key gets a dash, so the page builds in every branch."""
    names = keys.split()
    if words and set(words) != set(names):
        raise KeyError(f"glue_words: keys differ: {sorted(set(words) ^ set(names))}")
    for key in names:
        glue_text(f"{prefix}{key}", words.get(key, "—"))

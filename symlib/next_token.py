"""What the next-token experiments measure, from run-store frames: fit, n*(d), the scaling slope,
and the verdict rules written before the runs.

* :func:`fit_table` — per (model, d, n) point: seed-mean train and test error, and whether every
  run of the point fit its training set (train error <= ``FIT_ERROR``).
* :func:`n_star` — per (model, d): the smallest n whose seed-mean test error is below 0.1 and
  stays below 0.2 at every larger n of the grid, among points whose runs fit.
* :func:`loglog_slope` — least-squares slope of log n* against log d, with its t interval.
* :func:`copy_verdict` — the rule for the copy claim, stated in the chapter before the runs.
* :func:`choose_vo_scale` — which multiplier of the VO term the copy sweep uses.
* :func:`rule_check` / :func:`rule_holds` — an early-stopping rule replayed on full-length runs.
* :func:`binding_table` — variable binding's test error split into "the other variable's value"
  and "any other token".

Input frames come from :meth:`symlib.store.RunStore.frame` (one row per run; the embedding
dimension d is its column ``model.dim``, shown as ``d``).  Chapter: *Next-token experiments*.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

FIT_ERROR = 0.01      # a run fit its training set if its final train error is at most this
N_STAR_BELOW = 0.1    # n*: seed-mean test error below this ...
N_STAR_STAYS = 0.2    # ... and below this at every larger n of the grid
VO_HANDFUL = 32       # "a handful of samples": the VO model's n* at most this, at every d


def fit_table(frame: pd.DataFrame, by=("model", "d", "n")) -> pd.DataFrame:
    """Seed-mean ``train_error`` and ``test_error`` per point, the number of seeds, and ``fits``:
    whether every run of the point ends with train error <= :data:`FIT_ERROR`."""
    if frame.empty:
        raise ValueError("no runs: the frame is empty (run the experiment's sweep first)")
    frame = with_d(frame)
    missing = {"train_error", "test_error", *by} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks column(s) {sorted(missing)}; it must come from RunStore.frame "
                         "over next-token runs recorded with their train error")
    g = frame.groupby(list(by))
    out = pd.DataFrame({"train_error": g.train_error.mean(), "test_error": g.test_error.mean(),
                        "seeds": g.size(), "fits": g.train_error.max() <= FIT_ERROR})
    return out.reset_index()


def with_d(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a column ``d``, the embedding dimension (``model.dim`` of a run-store frame)."""
    return frame if "d" in frame.columns else frame.assign(d=frame["model.dim"])


def stable_n_star(points: pd.DataFrame, below: float = N_STAR_BELOW, stays: float = N_STAR_STAYS) -> float:
    """n* of one curve: ``points`` has columns ``n``, ``test_error``, ``fits`` (one row per n).
    Points whose runs did not fit are left out; NaN if no n qualifies."""
    p = points[points.fits].sort_values("n")
    errors, ns = p.test_error.to_numpy(), p.n.to_numpy()
    for i in range(len(ns)):
        if errors[i] < below and (errors[i:] < stays).all():
            return float(ns[i])
    return math.nan


def n_star(frame: pd.DataFrame, below: float = N_STAR_BELOW, stays: float = N_STAR_STAYS) -> pd.DataFrame:
    """One row per (model, d): ``n_star`` (:func:`stable_n_star`), the largest n of the grid, and
    how many of the curve's points did not fit (``unfit``)."""
    table = fit_table(frame)
    rows = []
    for (model, d), curve in table.groupby(["model", "d"]):
        rows.append({"model": model, "d": d, "n_star": stable_n_star(curve, below, stays),
                     "n_max": int(curve.n.max()), "unfit": int((~curve.fits).sum())})
    return pd.DataFrame(rows)


def loglog_slope(d, n_star, level: float = 0.95) -> dict[str, float]:
    """Least-squares fit ``log2 n* = a + slope · log2 d`` over the finite n*; the slope with its
    two-sided ``level`` t interval (NaN interval with fewer than three points)."""
    d, y = np.asarray(d, dtype=float), np.asarray(n_star, dtype=float)
    ok = np.isfinite(y) & np.isfinite(d)
    if ok.sum() < 2:
        return {"slope": math.nan, "low": math.nan, "high": math.nan, "points": int(ok.sum())}
    fit = stats.linregress(np.log2(d[ok]), np.log2(y[ok]))
    if ok.sum() < 3:
        return {"slope": fit.slope, "low": math.nan, "high": math.nan, "points": 2}
    t = stats.t.ppf(0.5 + level / 2, ok.sum() - 2)
    return {"slope": fit.slope, "low": fit.slope - t * fit.stderr, "high": fit.slope + t * fit.stderr,
            "points": int(ok.sum())}


def copy_verdict(plain_slope: dict, vo_n_star: pd.Series, handful: int = VO_HANDFUL) -> tuple[str, list[bool]]:
    """The copy claim's rule (stated in the chapter before the runs):

    1. the plain model's n* grows with d: the slope's interval lies above 0;
    2. roughly linearly: the slope's interval holds 1;
    3. the VO model's n* is at most ``handful`` at every d (an unknown n*, NaN, fails).

    Reproduced if all three hold, partial if some do (:func:`symlib.status.grade`).  Returns the
    verdict and the three checks."""
    from .status import grade
    checks = [bool(plain_slope["low"] > 0),
              bool(plain_slope["low"] <= 1 <= plain_slope["high"]),
              bool(len(vo_n_star) > 0 and (vo_n_star.fillna(math.inf) <= handful).all())]
    return grade(checks), checks


def choose_vo_scale(table: pd.DataFrame, handful: int = VO_HANDFUL) -> float:
    """The VO multiplier the copy sweep uses (rule stated before ``copy_vo_scale`` ran): the
    smallest ``scale`` whose n* is at most ``handful`` at every d of ``table`` (columns ``scale``,
    ``d``, ``n_star``); if none is, the one with the smallest largest n* over d (ties: smaller)."""
    worst = table.assign(n_star=table.n_star.fillna(math.inf)).groupby("scale").n_star.max().sort_index()
    good = worst[worst <= handful]
    return float(good.index.min()) if len(good) else float(worst.idxmin())


RULE_TOLERANCE = 0.02  # largest change of the reported test error an early-stopping rule may make


def rule_check(runs, rule, fit_error: float = FIT_ERROR) -> pd.DataFrame:
    """What an early-stopping ``rule`` (a :class:`~symlib.training.TrainConfig`) would have done to
    full-length ``runs`` (:class:`~symlib.training.RunResult` s): per run, the epoch it stops at,
    the test error it would report against the full run's, and whether the run's fit (train error
    <= ``fit_error``) is the same.  Training is deterministic, so a run with the rule is the full
    run cut at its stop (:func:`~symlib.training.stopped_curve`)."""
    from .store import flatten_config
    from .training import stopped_curve
    rows = []
    for r in runs:
        full, cut = r.curve[-1], stopped_curve(r.curve, rule)[-1]
        c = flatten_config(r.config)
        rows.append({"model": c["model"], "d": c["model.dim"], "n": c["n"], "seed": c["seed"],
                     "stop_epoch": cut["epoch"], "epochs": full["epoch"],
                     "test_error_full": full["test_error"], "test_error_stopped": cut["test_error"],
                     "change": cut["test_error"] - full["test_error"],
                     "same_fit": (cut["train_error"] <= fit_error) == (full["train_error"] <= fit_error)})
    return pd.DataFrame(rows)


def rule_holds(check: pd.DataFrame, tolerance: float = RULE_TOLERANCE) -> bool:
    """The rule is adopted only if, on every full-length run, it changes the reported test error
    by at most ``tolerance`` and leaves the run's fit unchanged."""
    return bool(len(check) and (check.change.abs() <= tolerance).all() and check.same_fit.all())


def binding_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, n): seed-mean test error, its part spent on the other variable's value
    (``test_error_other_label``) and the rest (any other token)."""
    if "test_error_other_label" not in frame.columns:
        raise ValueError("frame lacks test_error_other_label: it must hold variable-binding runs")
    g = frame.groupby(["model", "n"])
    out = pd.DataFrame({"test_error": g.test_error.mean(), "other_value": g.test_error_other_label.mean(),
                        "train_error": g.train_error.mean(), "seeds": g.size()})
    out["any_other_token"] = out.test_error - out.other_value
    return out.reset_index()

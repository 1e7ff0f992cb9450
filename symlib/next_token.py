"""What the next-token experiments measure, from run-store frames: fit, n*(d), the scaling slope,
and the verdict rules written before the runs.

* :func:`fit_table` — per (model, d, n) point: seed-mean train and test error, and whether every
  run of the point fit its training set (train error <= ``FIT_ERROR``).
* :func:`n_star` — per (model, d): the smallest n whose seed-mean test error is below 0.1 and
  stays below 0.2 at every larger n of the grid, among points whose runs fit.
* :func:`n_star_words` — one model's n* as a phrase, for numbers glued into the prose.
* :func:`loglog_slope` — least-squares slope of log n* against log d, with its t interval.
* :func:`copy_verdict` — the rule for the copy claim, stated in the chapter before the runs.
* :func:`choose_vo_scale` — which multiplier of the VO term the copy sweep uses.
* :func:`rule_check` / :func:`rule_holds` — an early-stopping rule replayed on full-length runs.
* :func:`paired_points` — two runs of each (d, n, seed) point side by side: a control against the
  run it controls (the logit-scale control, bf16 against float32).
* :func:`binding_table` — variable binding's test error split into "the other variable's value"
  and "any other token"; :func:`binding_verdict` — the rule for the binding claim.
* :func:`binding_progress` — what a partly run binding grid shows so far (for the status page).
* :func:`cost_per_sample_epoch`, :func:`cpu_rate`, :func:`point_rate` / :func:`missing_cpu_hours` —
  what a run cost per sample-epoch, and what the runs still missing from a grid would cost on this CPU.

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


def complete_curves(frame: pd.DataFrame, configs) -> pd.DataFrame:
    """The rows of a run-store ``frame`` whose curve — (model, d, seed) — holds every n of its grid
    in ``configs`` (the experiment's :class:`~symlib.runs.RunConfig` s).  A sweep runs the largest n
    first, so a curve still being swept lacks its *small* n, and its n* would be too large: n* and
    the verdicts are read only on complete curves."""
    from .models import model_label
    grid: dict[tuple, set] = {}
    for c in configs:
        grid.setdefault((model_label(c.model), c.model.dim, c.seed), set()).add(c.data.n)
    if frame.empty:
        return frame
    have = frame.groupby(["model", "model.dim", "seed"]).n.agg(set)
    keep = {k for k, ns in have.items() if k in grid and grid[k] <= ns}
    index = pd.MultiIndex.from_frame(frame[["model", "model.dim", "seed"]])
    return frame[index.isin(keep)]


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


def n_star_words(stars: pd.DataFrame) -> str:
    """The n* of one model (rows of :func:`n_star`) as a phrase for the chapter's prose, e.g.
    ``"256, 512 and > 1024 at $d$ = 32, 64 and 128"`` (``> N``: not reached by the largest n, N)."""
    if stars.empty or stars.model.nunique() != 1:
        raise ValueError("n_star_words needs the n* rows of exactly one model")
    rows = stars.sort_values("d")
    values = [str(int(r.n_star)) if math.isfinite(r.n_star) else f"> {r.n_max}" for r in rows.itertuples()]
    return f"{_and(values)} at $d$ = {_and([str(d) for d in rows.d])}"


def copies_at_words(frame: pd.DataFrame, below: float = N_STAR_BELOW) -> str:
    """Seed by seed, the n at which one model's runs copy (test error below ``below``), as a phrase
    for the chapter's prose: ``"$d = 2048$: seed 0 at $n$ = 32, 128 and 256; seed 1 at $n$ = 4 and
    8"`` — the per-seed view behind a seed-mean n* (chapter *Next-token experiments*, the GPU's d).
    ``frame``: runs of one model with ``d``, ``seed``, ``n`` and ``test_error`` columns."""
    if frame.empty or frame.model.nunique() != 1:
        raise ValueError("copies_at_words needs the runs of exactly one model")
    parts = []
    for d, runs_d in frame.groupby("d"):
        seeds = []
        for seed, runs in runs_d.groupby("seed"):
            ok = sorted(int(n) for n in runs[runs.test_error < below].n)
            seeds.append(f"seed {seed} " + (f"at $n$ = {_and([str(n) for n in ok])}" if ok else "at no $n$"))
        parts.append(f"$d = {d}$: " + "; ".join(seeds))
    return "; ".join(parts)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


def checks_said(checks: list[bool]) -> str:
    """A verdict's checks as the status page says them: ``[True, False]`` → ``"held, failed"``."""
    return ", ".join("held" if c else "failed" for c in checks)


def choose_vo_scale(table: pd.DataFrame, handful: int = VO_HANDFUL) -> float:
    """The VO multiplier the copy sweep uses (rule stated before ``copy_vo_scale`` ran): the
    smallest ``scale`` whose n* is at most ``handful`` at every d of ``table`` (columns ``scale``,
    ``d``, ``n_star``); if none is, the one with the smallest largest n* over d (ties: smaller)."""
    worst = table.assign(n_star=table.n_star.fillna(math.inf)).groupby("scale").n_star.max().sort_index()
    good = worst[worst <= handful]
    return float(good.index.min()) if len(good) else float(worst.idxmin())


def paired_points(reference: pd.DataFrame, other: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """``reference`` and ``other`` run-store frames joined on (d, n, seed): one row per point that
    both hold, ``other``'s columns with ``suffix`` (e.g. ``"_control"``), sorted by d then n."""
    if not suffix:
        raise ValueError("paired_points needs a non-empty suffix for the other frame's columns")
    keys = ["d", "n", "seed"]
    return (with_d(reference).merge(with_d(other), on=keys, suffixes=("", suffix))
            .sort_values(["d", "n"]).reset_index(drop=True))


RULE_TOLERANCE = 0.02  # largest change of the reported test error an early-stopping rule may make


def rule_check(runs, rule, fit_error: float = FIT_ERROR) -> pd.DataFrame:
    """What an early-stopping ``rule`` (a :class:`~symlib.runs.TrainConfig`) would have done to
    full-length ``runs`` (:class:`~symlib.runs.RunResult` s): per run, the epoch it stops at,
    the test error it would report against the full run's, and whether the run's fit (train error
    <= ``fit_error``) is the same.  Training is deterministic, so a run with the rule is the full
    run cut at its stop (:func:`~symlib.runs.stopped_curve`)."""
    from .store import flatten_config
    from .runs import stopped_curve
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


BINDING_PLATEAU = (0.3, 0.7)   # the copy plateau: test error in this range ...
BINDING_OTHER_SHARE = 0.8      # ... at least this share of it the other variable's value
BINDING_STILL_WRONG = 0.1      # plain: still wrong on at least this fraction at the largest n
BINDING_SOLVED = 0.05          # + KQ & VO: below this test error ...
BINDING_SOLVED_BY = 16384      # ... by this n


def binding_verdict(table: pd.DataFrame) -> tuple[str, list[bool], str]:
    """The binding claim's rule (stated in the chapter before the runs), on :func:`binding_table`:

    1. the plain model shows the copy plateau: at some n its test error lies in
       :data:`BINDING_PLATEAU` and at least :data:`BINDING_OTHER_SHARE` of it is the other value;
    2. the plain model is still wrong on at least :data:`BINDING_STILL_WRONG` at the largest n run;
    3. the model + KQ & VO is below :data:`BINDING_SOLVED` at some n <= :data:`BINDING_SOLVED_BY`.

    Returns the verdict, the checks and a sentence with the numbers."""
    from .status import grade
    plain = table[table.model == "transformer"].sort_values("n")
    both = table[table.model.str.startswith("transformer + KQ & VO")].sort_values("n")
    if plain.empty or both.empty:
        raise ValueError("binding_verdict needs runs of the plain model and of the model + KQ & VO")
    low, high = BINDING_PLATEAU
    plateau = plain[(plain.test_error >= low) & (plain.test_error <= high)
                    & (plain.other_value >= BINDING_OTHER_SHARE * plain.test_error)]
    last = plain.iloc[-1]
    solved = both[(both.test_error < BINDING_SOLVED) & (both.n <= BINDING_SOLVED_BY)]
    checks = [len(plateau) > 0, bool(last.test_error >= BINDING_STILL_WRONG), len(solved) > 0]
    def curve(t):
        return ", ".join(f"{e:.2f} (n = {n})" for n, e in zip(t.n, t.test_error))
    lo, hi = int(min(plain.seeds.min(), both.seeds.min())), int(max(plain.seeds.max(), both.seeds.max()))
    measured = (f"d = 64, {lo if lo == hi else f'{lo}–{hi}'} seeds per point: plain test error {curve(plain)}; "
                f"share that is the other variable's value at the plateau: "
                + (", ".join(f"{o / e:.0%} (n = {n})" for n, o, e in zip(plateau.n, plateau.other_value, plateau.test_error))
                   if len(plateau) else "no plateau")
                + f". + KQ & VO: {curve(both)}. Checks (plateau / plain still wrong at n = {int(last.n)} / "
                f"KQ & VO < {BINDING_SOLVED} by {BINDING_SOLVED_BY}): "
                + checks_said(checks) + ".")
    return grade(checks), checks, measured


def binding_ours(table: pd.DataFrame) -> str:
    """The binding measurement in a few words (the status page's "ours"): each model's test error at
    its largest n, with the plain model's share that is the other variable's value.
    ``table``: :func:`binding_table`."""
    parts = []
    for model, part in table.sort_values("n").groupby("model", sort=False):
        last = part.iloc[-1]
        name = "plain" if model == "transformer" else "+ KQ & VO" if "KQ & VO" in model else model
        share = (f" ({last.other_value / last.test_error:.0%} the other value)"
                 if name == "plain" and last.test_error > 0 else "")
        parts.append(f"{name} {last.test_error:.2f} at n = {int(last.n)}{share}")
    return ", ".join(parts)


def binding_progress(table: pd.DataFrame) -> str:
    """What a partly run binding grid shows so far, for the status page (:func:`symlib.status.progress`):
    per model, the test error at its largest stored n and the share of it that is the other
    variable's value.  ``table``: :func:`binding_table`."""
    if table.empty:
        raise ValueError("binding_progress needs at least one stored run (binding_table is empty)")
    parts = []
    for model, part in table.sort_values("n").groupby("model", sort=False):
        last = part.iloc[-1]
        share = f", {last.other_value / last.test_error:.0%} of it the other value" if last.test_error > 0 else ""
        parts.append(f"{model}: test error {last.test_error:.2f} at n = {int(last.n)}{share} "
                     f"({int(last.seeds)} seed{'s' if last.seeds > 1 else ''})")
    return "; ".join(parts) + "."


RATE_MIN_N = 256  # below this n a run's fixed costs (evaluation, set-up) dominate its cost per sample


def cpu_rate(frame: pd.DataFrame, min_n: int = RATE_MIN_N) -> pd.Series:
    """Median CPU seconds per sample-epoch (wall time × threads / (n × epochs run)) of the runs of
    ``frame`` trained on a CPU at n >= ``min_n``, by d.  The copy model's rate grows with d and, more
    slowly, with n (its tied readout scores every token, and the vocabulary grows with n), so a rate
    measured at moderate n under-prices the largest runs.  ``frame``: copy runs (:func:`with_d`)."""
    cpu = frame[(frame.device == "cpu") & (frame.n >= min_n)]
    return cost_per_sample_epoch(cpu).groupby(cpu.d).median().rename("s_per_sample_epoch")


def cost_per_sample_epoch(frame: pd.DataFrame) -> pd.Series:
    """CPU seconds per sample-epoch of each run of ``frame``: wall time × threads / (n × epochs run)."""
    return frame.wall_time_s * frame.threads / (frame.n * frame.epochs_run)


def price_check(frame: pd.DataFrame, upto: int = 1024, min_n: int = RATE_MIN_N) -> pd.DataFrame:
    """How well :func:`missing_cpu_hours`' rule prices large runs, where both sides are measured.

    Per d with CPU runs both at ``min_n`` <= n <= ``upto`` and above ``upto``: the runs above
    ``upto`` priced at the median cost per sample-epoch of those at or below it (the rule of
    :func:`cpu_rate`, fed only the smaller runs), their recorded CPU time, and ``ratio`` =
    recorded / priced — above 1 where the rule under-prices.  ``frame``: copy runs (:func:`with_d`)."""
    rate = cpu_rate(frame[frame.n <= upto], min_n)                     # the rule, fed only the smaller runs
    high = frame[(frame.device == "cpu") & (frame.n > upto) & frame.d.isin(rate.index)]
    rows = []
    for d, part in high.groupby("d"):
        priced = float((part.n * part.epochs_run).sum() * rate[d] / 3600)
        recorded = float((part.wall_time_s * part.threads).sum() / 3600)
        rows.append({"d": int(d), "runs": len(part), "largest_n": int(part.n.max()), "priced_cpu_hours": priced,
                     "recorded_cpu_hours": recorded, "ratio": recorded / priced})
    return pd.DataFrame(rows, columns=["d", "runs", "largest_n", "priced_cpu_hours", "recorded_cpu_hours", "ratio"])


def point_rate(frame: pd.DataFrame) -> pd.Series:
    """Median CPU seconds per sample-epoch of the runs of ``frame`` trained on a CPU, by (d, n): what
    a run costs at a point another seed has already run on this CPU.  ``frame``: copy runs
    (:func:`with_d`)."""
    cpu = frame[frame.device == "cpu"]
    return cost_per_sample_epoch(cpu).groupby([cpu.d, cpu.n]).median().rename("s_per_sample_epoch")


def missing_cpu_hours(configs, rate: pd.Series, at_point: pd.Series | None = None) -> pd.DataFrame:
    """Per d: the runs of ``configs`` (configs not yet stored), their sample-epochs, and their cost
    in CPU-hours.  A run at a (d, n) another seed ran on this CPU is priced at that point's measured
    cost (``at_point``, from :func:`point_rate`; ``priced_at_point`` counts them); the others at
    d's ``rate`` (:func:`cpu_rate`).  A d without a measured rate is priced at the geometric mean of
    the nearest measured d below and above (``how``: "interpolated"); a d outside the measured range
    is an error, not an extrapolation."""
    if rate.empty:
        raise ValueError("missing_cpu_hours needs a rate measured at one d at least (cpu_rate is empty)")
    at_point = pd.Series(dtype=float) if at_point is None else at_point
    by_d: dict[int, list] = {}
    for c in configs:
        by_d.setdefault(c.model.dim, []).append(c)
    out = []
    for d, runs in sorted(by_d.items()):
        if d in rate.index:
            r, how = rate[d], "measured"
        else:
            below, above = rate.index[rate.index < d], rate.index[rate.index > d]
            if not len(below) or not len(above):
                raise ValueError(f"no CPU rate measured at or around d = {d}; measured at d = "
                                 f"{', '.join(map(str, rate.index))}")
            r, how = math.sqrt(rate[below.max()] * rate[above.min()]), "interpolated"
        seconds = [c.data.n * c.train.epochs * at_point.get((d, c.data.n), r) for c in runs]
        out.append({"d": d, "runs": len(runs), "sample_epochs": sum(c.data.n * c.train.epochs for c in runs),
                    "priced_at_point": sum((d, c.data.n) in at_point.index for c in runs),
                    "s_per_sample_epoch": r, "how": how, "cpu_hours": sum(seconds) / 3600})
    return pd.DataFrame(out, columns=["d", "runs", "sample_epochs", "priced_at_point", "s_per_sample_epoch",
                                      "how", "cpu_hours"])

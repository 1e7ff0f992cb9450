"""The paper's own curves beside ours: overlays and fidelity tables.

``data/paper/figdata.json`` holds the curves of the authors' figure files (eboix/relational-reasoning,
``experiments/figs/*.pdf``, commit 35a75ac), digitized from the vector content of the PDFs; see
``data/paper/figdata.md``.  They are for *reading* our figures against the paper's — an overlay
(dashed, grey) and, per figure, the paper's n* next to ours by the same rule — never for choosing
settings.  Chapters: *Regression experiments* (every figure that figdata covers) and the intro's
headline figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache

import pandas as pd

from .store import REPO_DATA

FIGDATA = REPO_DATA / "paper" / "figdata.json"
SOURCE = "the paper's curve, digitized from the authors' figure files (data/paper/figdata.md)"

_ARCH = "diff_architectures_gotu.pdf"
_TASKS = "various_tasks_1_gotu.pdf"
_MAJ_BOTH = "majority_tasks_abridged_transformer_identity_scalings_1.pdf"

# our figure -> {(panel, our curve): (figure file, series)}; panel None for one-panel figures
SERIES: dict[str, dict[tuple[str | None, str], tuple[str, str]]] = {
    # figure 1: the paper's "modified transformer" of samedifferent.pdf is the KQ identity (its
    # teaser1.pdf twin on ABA vs ABB is labelled "Transformer + KQ identity")
    "fig1": {(None, "MLP"): ("samedifferent.pdf", "Fully-connected"),
             (None, "transformer"): ("samedifferent.pdf", "Transformer"),
             (None, "transformer + KQ"): ("samedifferent.pdf", "Modified transformer")},
    "fig2": {(None, "transformer"): (_ARCH, "Transformer, lr 0.001"),
             (None, "transformer + KQ"): (_ARCH, "Transformer + KQ identity, lr 0.001"),
             (None, "transformer + VO"): (_ARCH, "Transformer + VO identity, lr 0.001"),
             (None, "transformer + KQ & VO"): (_ARCH, "Transformer + KQ, VO identity, lr 0.001"),
             (None, "MLP"): (_ARCH, "Depth-3 FCNet, lr 0.001"),
             (None, "RNN (ReLU Elman)"): (_ARCH, "RNN, lr 0.001"),
             (None, "LSTM (random initial state)"): (_ARCH, "LSTM, lr 0.001")},
    "fig3": {**{(t, "transformer"): (_TASKS, s) for t, s in (
                ("ABA vs ABB", "ABA vs. ABB, lr 0.001"), ("AABB vs ABAB", "AABB vs. ABAB, lr 0.001"),
                ("majority-2", "length-2 majority, lr 0.001"), ("majority-4", "length-4 majority, lr 0.001"),
                ("majority-6", "length-6 majority, lr 0.001"), ("majority-8", "length-8 majority, lr 0.001"))},
             **{(f"majority-{k}", "transformer + KQ & VO"): (_MAJ_BOTH, f"majority_len={k}, lr 0.001")
                for k in (2, 4, 6, 8)}},
    # figure 6: its MLP curve is point for point figure 2's depth-3 FCNet, so the task is ABA vs ABB
    "fig6": {("ABA vs ABB", "MLP"): ("mlp_concat_XXT_gotu.pdf", "MLP, lr 0.001"),
             ("ABA vs ABB", "MLP + XXᵀ"): ("mlp_concat_XXT_gotu.pdf", "MLP + XX^T data augmentation, lr 0.001")},
    "fig7": {(None, "transformer"): ("transformer_mimetic_n_gotu.pdf", "regular init, lr 0.001"),
             (None, "transformer (mimetic, authors' form)"): ("transformer_mimetic_n_gotu.pdf", "mimetic init, lr 0.001")},
    # figure 8: only scale 1 is common to both (the paper's other scales are 8 and 64, ours 2 and 4)
    "last_layer": {(None, "× 1"): ("transformer_lastlayer_1_gotu.pdf", "Initialization scale multiplier 1")},
}

# the paper's own replicates of one configuration (figdata.md): its noise, the yardstick of "agrees"
REPLICATES = [
    ("transformer, ABA vs ABB", ("teaser1.pdf", "Transformer"), (_ARCH, "Transformer, lr 0.001")),
    ("transformer + KQ, ABA vs ABB", ("teaser1.pdf", "Transformer + KQ identity"),
     (_ARCH, "Transformer + KQ identity, lr 0.001")),
    ("transformer, AABB vs ABAB", ("aabb_vs_abab_teaser.pdf", "AABB vs. ABAB, lr"), (_TASKS, "AABB vs. ABAB, lr 0.001")),
]


@lru_cache(maxsize=1)
def figdata() -> dict:
    """The digitized figures: file -> {'about', 'texts', 'series': name -> {'mean', 'band'}}."""
    return json.loads(FIGDATA.read_text(encoding="utf-8"))["figures"]


def curve(file: str, series: str) -> pd.Series:
    """One of the paper's plotted mean curves: test loss indexed by n."""
    try:
        points = figdata()[file]["series"][series]["mean"]
    except KeyError:
        raise KeyError(f"no series {series!r} in {file!r} of {FIGDATA}") from None
    return pd.Series({int(round(n)): max(float(y), 0.0) for n, y in points}, name=series).sort_index()


def n_star_of(c: pd.Series, threshold: float = 0.1) -> float:
    """The smallest plotted n with loss below ``threshold`` (NaN if none): our rule, on the paper's
    grid (figure 3's files plot every other power of two, so their n* is resolved to 4×)."""
    below = c[c < threshold]
    return float(below.index.min()) if len(below) else math.nan


def series_for(figure: str, panel: str | None = None) -> dict[str, tuple[str, str]]:
    """Our curve -> (file, series) for one figure (and panel)."""
    return {ours: src for (p, ours), src in SERIES.get(figure, {}).items() if p == panel}


PAPER_LABEL = "paper (digitized; marker colour = its curve)"


def overlay(ax, figure: str, panel: str | None = None, legend: bool = True) -> int:
    """Draw the paper's curves for ``figure`` (and ``panel``) on ``ax`` beside each of our curves
    that the axes show (found by its legend label): dashed grey lines, with markers in the colour of
    our matching curve.  Returns how many."""
    colours = {}
    handles, labels = ax.get_legend_handles_labels()
    for h, label in zip(handles, labels):
        if hasattr(h, "get_color"):
            colours[label] = h.get_color()
    drawn = 0
    for ours, (file, series) in series_for(figure, panel).items():
        if ours not in colours:  # only beside a curve of ours that the axes show
            continue
        c = curve(file, series)
        ax.plot(c.index, c.clip(lower=1e-6).values, ls="--", lw=1.2, color="0.45", marker="x", ms=5,
                mec=colours.get(ours, "0.45"), zorder=1)
        drawn += 1
    if drawn and legend:
        from matplotlib.lines import Line2D
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], ls="--", color="0.45", marker="x"))
        labels.append(PAPER_LABEL)
        ax.legend(handles, labels, fontsize=ax.get_legend().get_texts()[0].get_fontsize() if ax.get_legend() else 8)
    return drawn


def overlay_panels(fig, figure: str) -> int:
    """:func:`overlay` on each panel of a :func:`symlib.plots.loss_vs_n_panels` figure (panels are
    found by their titles), with the paper's entry added to the figure's one shared legend (or to
    each panel's legend, where the panels have their own)."""
    from matplotlib.lines import Line2D
    from .plots import shared_legend
    shared = bool(fig.legends)
    drawn = sum(overlay(ax, figure, ax.get_title(), legend=not shared) for ax in fig.axes if ax.get_visible())
    if drawn and shared:
        shared_legend(fig, extra=[(Line2D([], [], ls="--", color="0.45", marker="x"), PAPER_LABEL)])
    return drawn


def fidelity(frame: pd.DataFrame, figure: str, threshold: float = 0.1, by: str = "model",
             panel: str | None = None) -> pd.DataFrame:
    """Per curve of ``figure`` that the paper also plots: the paper's n* and ours by the same rule
    (smallest n whose mean test loss is below ``threshold``), ours / paper, and whether that ratio
    lies within the paper's own replicate spread (:func:`replicate_spread`).  ``panel`` names
    the column of ``frame`` that holds the panel (e.g. ``task_label``) for multi-panel figures."""
    from .plots import n_star
    rows, spread = [], replicate_spread(threshold)
    for (p, ours), (file, series) in SERIES.get(figure, {}).items():
        part = frame if p is None else frame[frame[panel] == p]
        part = part[part[by] == ours]
        if part.empty:
            continue
        theirs = n_star_of(curve(file, series), threshold)
        mine = n_star(part, threshold, by=by).get(ours, math.nan)
        grid = int(part.n.max())
        their_top = max(curve(file, series).index)
        rows.append({"curve": ours if p is None else f"{p}: {ours}",
                     "paper n*": _fmt(theirs, their_top),
                     "ours n*": _fmt(mine, grid),
                     "ours / paper": _ratio(mine, theirs, grid, their_top),
                     f"within the paper's own spread (×{spread:g})": _within(mine, theirs, grid, their_top, spread)})
    return pd.DataFrame(rows).set_index("curve") if rows else pd.DataFrame()


def replicate_spread(threshold: float = 0.1) -> float:
    """How far apart the paper's own replicates put n* (:data:`REPLICATES`, :func:`yardstick`): the
    largest ratio between two figure files plotting one configuration — the yardstick by which our
    n* "agrees" with the paper's."""
    ratios = [max(na / nb, nb / na) for _, na, nb in _replicate_n_stars(threshold)
              if not (math.isnan(na) or math.isnan(nb))]
    return max(ratios) if ratios else math.nan


def _replicate_n_stars(threshold: float):
    """(configuration, n* in one figure file, n* in the other) for each of :data:`REPLICATES`."""
    for name, a, b in REPLICATES:
        yield name, n_star_of(curve(*a), threshold), n_star_of(curve(*b), threshold)


def yardstick(threshold: float = 0.1) -> pd.DataFrame:
    """The paper's own replicates: n* of two figure files plotting one configuration, and their ratio."""
    rows = []
    for name, na, nb in _replicate_n_stars(threshold):
        rows.append({"configuration": name, "n* (one file)": _fmt(na, 0), "n* (the other)": _fmt(nb, 0),
                     "ratio": _ratio(na, nb, 0, 0)})
    return pd.DataFrame(rows).set_index("configuration")


def _fmt(x: float, top: int) -> str:
    return f"> {top}" if math.isnan(x) else str(int(x))


def _ratio_bounds(ours: float, theirs: float, our_top: int, their_top: int) -> tuple[float, float] | None:
    """ours / theirs as an interval: exact when both curves get below the threshold; a bound when
    one never does within its grid (its n* is past twice the grid's end); None when neither does."""
    seen_ours, seen_theirs = not math.isnan(ours), not math.isnan(theirs)
    if seen_ours and seen_theirs:
        return ours / theirs, ours / theirs
    if seen_theirs:
        return (2 * our_top / theirs if our_top else 0.0), math.inf
    if seen_ours:
        return 0.0, (ours / (2 * their_top) if their_top else math.inf)
    return None


def _ratio(ours: float, theirs: float, our_top: int, their_top: int) -> str:
    """ours / theirs, or a bound when one curve never gets below the threshold."""
    bounds = _ratio_bounds(ours, theirs, our_top, their_top)
    if bounds is None:
        return "neither below"
    lo, hi = bounds
    if lo == hi:
        return f"{lo:.0f}×" if lo >= 1 else f"1/{1 / lo:.0f}"
    if hi == math.inf:
        return f"> {lo:.0f}×" if lo else "n/a"
    return f"< 1/{1 / hi:.0f}" if hi != math.inf else "n/a"


def _within(ours: float, theirs: float, our_top: int, their_top: int, spread: float) -> str:
    """Is ours / theirs inside [1/spread, spread]?  "yes", "no", or "—" where a curve that never gets
    below the threshold leaves it open (its bound reaches into the spread)."""
    bounds = _ratio_bounds(ours, theirs, our_top, their_top)
    if bounds is None:
        return "yes"  # neither gets below: both say it is not learned on their grids
    lo, hi = bounds
    if lo > spread or hi < 1 / spread:
        return "no"
    return "yes" if 1 / spread <= lo and hi <= spread else "—"


# ----------------------------------------------------------------------------- the intro's headline

HEADLINE_MODELS = ["transformer", "transformer + KQ", "LSTM (random initial state)", "MLP"]
HEADLINE_CLAIMS = ["theory_mlp_unseen_weights", "mlp_trivial", "transformer_needs_data", "kq_sample_efficiency",
                   "majority", "theory_inverse_scaling", "copy_inverse_scaling", "variable_binding"]


def headline_runs(profile: str = "paper") -> pd.DataFrame:
    """Figure 2's runs (ABA vs ABB) of :data:`HEADLINE_MODELS`, over the seeds whose grid is complete
    in the store (empty when none is): the intro's headline figure.  Computes nothing."""
    from .experiments import seed_status, stored
    done = [s for s, (have, total) in seed_status("fig2", profile).items() if total and have == total]
    if not done:
        return pd.DataFrame()
    frame = stored("fig2", profile, done)[0]
    return frame[frame.model.isin(HEADLINE_MODELS)]


def headline_figure(frame: pd.DataFrame):
    """ABA vs ABB across architectures: ours (seed mean, band min–max over seeds) and the paper's
    curves dashed.  Returns the axes."""
    from .plots import loss_vs_n
    ax = loss_vs_n(frame, hue_order=[m for m in HEADLINE_MODELS if m in set(frame.model)],
                   title=f"ABA vs ABB on unseen symbols ({_seeds(frame)}; dashed: the paper)")
    overlay(ax, "fig2")
    return ax


def _seeds(frame: pd.DataFrame) -> str:
    s = sorted(frame.seed.unique())
    return f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}"


def reproduce_note(experiment: str, frame: pd.DataFrame, command: str | None = None, data: str = "") -> str:
    """Under a figure: the command that recomputes it (``python -m symlib sweep EXPERIMENT`` unless
    ``command`` names another), the runs and CPU-hours behind it (wall time × threads, as recorded;
    an empty ``frame``: none stored yet), the date the chapter was executed, and ``data``: a link to
    the plotted numbers (:func:`figure_data`), if any (Markdown)."""
    command = command or f"python -m symlib sweep {experiment}"
    if not len(frame):
        return _note(f"`{command}` computes the runs behind this figure (none stored yet)", data)
    threads = frame["threads"].fillna(1) if "threads" in frame else 1   # runs without the column used one
    gpu = frame["device"].astype(str).str.startswith("cuda") if "device" in frame else pd.Series(False, frame.index)
    cost = _cpu_time(float((frame['wall_time_s'] * threads)[~gpu].sum()))
    if gpu.any():  # runs of a GPU: their wall time, not CPU time (several runs shared the GPU)
        cost += f" and {gpu.sum()} runs on a GPU, {float(frame.wall_time_s[gpu].sum()) / 3600:.1f} hours of run time"
    return _note(f"`{command}` recomputes the {len(frame)} runs behind this figure "
                 f"({cost} as recorded; stored runs are read, not recomputed)", data)


RUN_COLUMNS = ["task_label", "model", "n", "seed", "test_loss", "train_loss"]  # a run figure's CSV, by default


def glue_run_note(key: str, experiment: str, frame: pd.DataFrame, plotted: pd.DataFrame | None = None,
                  command: str | None = None) -> str:
    """Under a glued figure drawn from stored runs: glue ``<key>-note`` (:func:`symlib.plots.glue_text`),
    the :func:`reproduce_note` of ``frame``'s runs with a link to the CSV of ``plotted`` (default:
    ``frame``'s :data:`RUN_COLUMNS`), written by :func:`figure_data` — no CSV while ``frame`` is
    empty.  Returns the note."""
    from .plots import glue_text
    if plotted is None:
        plotted = frame[[c for c in RUN_COLUMNS if c in frame]]
    data = figure_data(key, plotted) if len(frame) else ""
    return glue_text(f"{key}-note", reproduce_note(experiment, frame, command, data))


def glue_computed_note(key: str, chapter: str, plotted: pd.DataFrame, cached: Sequence[str] = ()) -> str:
    """Under a glued figure that ``chapter`` computes: glue ``<key>-note``, the :func:`computed_note`
    with a link to the CSV of ``plotted`` (none while it is empty).  Returns the note."""
    from .plots import glue_text
    data = figure_data(key, plotted) if len(plotted) else ""
    return glue_text(f"{key}-note", computed_note(chapter, cached, data=data))


def computed_note(chapter: str, cached: Sequence[str] = (), data: str = "", root=None) -> str:
    """Under a figure that its chapter computes instead of reading training runs (chapters *The
    transformer kernel*, *Next-token theory*, *MLPs cannot reason with unseen symbols*, *Template
    tasks*): the command that recomputes it, ``python -m symlib book CHAPTER``; the results it is
    drawn from, ``cached``: names of ``<data root>/CHAPTER/<name>.json`` written by
    :func:`symlib.store.cached_result`, with their CPU time as recorded (wall time × threads); none
    when the figure is computed in place; a name the store lacks (the smoke profile stores nothing)
    is said to be computed in this execution.  Then the date the chapter was executed, and ``data``:
    a link to the plotted numbers (:func:`figure_data`), if any (Markdown)."""
    from pathlib import Path
    from .store import default_root
    command = f"`python -m symlib book {chapter}`"
    if not cached:
        return _note(f"{command} recomputes this figure (the chapter computes it afresh on every execution; "
                     "nothing is stored)", data)
    folder = (Path(root) if root is not None else default_root()) / chapter
    files = ", ".join(f"`{name}.json`" for name in cached)
    paths = [folder / f"{name}.json" for name in cached]
    if not all(p.exists() for p in paths):
        return _note(f"{command} recomputes this figure ({files} of `data/{chapter}/`, computed in this "
                     "execution: not stored)", data)
    seconds = 0.0
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        if "wall_time_s" not in record:
            raise ValueError(f"{path} has no wall time: not a result file of symlib.store.cached_result")
        seconds += record["wall_time_s"] * (record.get("provenance") or {}).get("threads", 1)
    return _note(f"{command} draws this figure from results cached in `data/{chapter}/` ({files}, "
                 f"{_cpu_time(seconds)} as recorded; `-p recompute True` computes them afresh)", data)


def _note(what: str, data: str) -> str:
    import datetime
    return (f"*Reproduce:* {what}; chapter executed {datetime.date.today():%Y-%m-%d}."
            + (f" {data}" if data else ""))


def _cpu_time(seconds: float) -> str:
    if seconds >= 360:
        return f"{seconds / 3600:.1f} CPU-hours"
    minutes = round(seconds / 60)
    return f"{minutes} CPU-minute{'s' if minutes > 1 else ''}" if minutes else "under a CPU-minute"


FIGURE_DATA = "figures"   # <data root>/figures/<name>.csv: the numbers a figure plots


def figure_data(name: str, plotted: pd.DataFrame, root=None) -> str:
    """Write the numbers a figure plots to ``<data root>/figures/<name>.csv`` (atomically) and
    return a Markdown link to it from a chapter page, ``"Plotted data: [name.csv](…)."``.  The link
    is ``""`` where the data root is not the repository's ``data/`` (the smoke profile's scratch
    store), whose files the site does not carry.  Glued into a page (``symlib.plots.glue_text``),
    the link becomes a download of the file."""
    import re
    from pathlib import Path
    from .store import atomic_write_text, default_root
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or ""):
        raise ValueError(f"figure data name {name!r}: use lower-case letters, digits, '-' and '_'")
    if not isinstance(plotted, pd.DataFrame) or plotted.empty:
        raise ValueError(f"figure data {name!r}: nothing to write (an empty or missing frame)")
    root = Path(root) if root is not None else default_root()
    path = root / FIGURE_DATA / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, plotted.to_csv(index=False, float_format="%.6g"))
    if root.resolve() != REPO_DATA.resolve():
        return ""
    return f"Plotted data: [{name}.csv](../data/{FIGURE_DATA}/{name}.csv)."

"""Sample-efficiency figures and their summary numbers, from run-store frames.

* :func:`loss_vs_n`  — test loss on unseen symbols against n: mean over seeds, a min–max band,
  log-log axes, the trivial level (predicting 0 on ±1 labels gives loss 1) marked.
* :func:`loss_vs_n_panels` — the same, one panel per task / axis value (small multiples).
* :func:`n_star`     — per curve, the smallest n whose mean test loss is below a threshold.
* :func:`curve_table` — mean per curve and n, for claim cells.
* :func:`mean_log_loss` — one difficulty number per curve when n* is undefined.
* :func:`learning_curves` — training and test loss against epoch, one line per run.
* :func:`glue_figure`, :func:`glue_text` — hand a figure or a number in words to the page (myst-nb
  glue), for numbered captions and for numbers in sentences.
* :func:`run_summary` — per run: when it fit its training set, its last test loss, and the test
  loss that early stopping on the validation alphabet would have reported.

Input frames come from :meth:`symlib.store.RunStore.frame` (one row per run) or, for the last two,
:meth:`symlib.store.RunStore.curves` (one row per run and evaluation epoch).  Chapter:
*Regression experiments*.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

TRIVIAL_LOSS = 1.0  # MSE of the constant 0 on ±1 labels


def _minmax(values) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def loss_vs_n(frame: pd.DataFrame, y: str = "test_loss", hue: str = "model", ax=None,
              title: str | None = None, trivial: float | None = TRIVIAL_LOSS, logy: bool = True,
              hue_order=None, style: str | None = None, palette=None):
    """Line per ``hue`` value: mean of ``y`` over seeds at each n, band = min..max over seeds.
    ``palette``: colours by ``hue`` value (seaborn's default order otherwise)."""
    if frame.empty:
        raise ValueError("no runs to plot: the frame is empty (run the experiment's sweep first)")
    ax = ax or plt.subplots(figsize=(6.4, 4.2))[1]
    sns.lineplot(data=frame, x="n", y=y, hue=hue, style=style, hue_order=hue_order, estimator="mean",
                 errorbar=_minmax, marker="o", ax=ax, palette=palette)
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    if trivial is not None:
        ax.axhline(trivial, color="grey", ls=":", lw=1, label="trivial (predict 0)")  # dashed: the paper's curves
    ax.set_xlabel("n  (training samples = train alphabet size)")
    ax.set_ylabel({"test_loss": "test loss (MSE, unseen symbols)",
                   "test_error": "test error (unseen symbols)"}.get(y, y))
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def loss_vs_n_panels(frame: pd.DataFrame, panel: str, hue: str = "model", panel_order=None,
                     hue_order=None, ncols: int = 3, title: str | None = None, **kwargs):
    """:func:`loss_vs_n` once per value of ``panel``, on shared axes; returns the figure.

    Where panels share curves (the same models on several tasks), each curve keeps one colour in
    every panel and the figure has one legend, below the panels (:func:`shared_legend`).  Where
    each panel has curves of its own (one hyper-parameter per panel, figures 4–5), each panel keeps
    its own legend."""
    if frame.empty:
        raise ValueError("no runs to plot: the frame is empty (run the experiment's sweep first)")
    panels = list(panel_order) if panel_order is not None else sorted(frame[panel].unique())
    rows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(4.2 * ncols, 3.4 * rows), sharex=True, sharey=True,
                             squeeze=False)
    hue_order = hue_order if hue_order is not None else sorted(frame[hue].unique())
    per_panel = [set(frame.loc[frame[panel] == value, hue]) for value in panels]
    own_curves = sum(len(h) for h in per_panel) == len(set().union(*per_panel))  # no curve in two panels
    palette = None if own_curves else dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order))))
    for ax, value in zip(axes.flat, panels):
        part = frame[frame[panel] == value]
        if part.empty:
            ax.set_title(f"{value} (no runs yet)", fontsize=9)
            continue
        loss_vs_n(part, hue=hue, ax=ax, hue_order=[h for h in hue_order if h in set(part[hue])], palette=palette,
                  **kwargs)
        ax.set_title(str(value), fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("test loss")
        if own_curves:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    if own_curves:
        fig.tight_layout()
        return fig
    return shared_legend(fig)


def shared_legend(fig, extra=(), ncols: int = 3):
    """One legend for every panel of ``fig``, below them, instead of one small legend per panel:
    the labels of all visible panels in the order first seen, then ``extra`` ((handle, label)
    pairs, e.g. the paper's dashed curve).  Replaces any legend ``fig`` already has, so it can be
    called again after more curves are drawn; keeps room for the legend so the panels keep their
    size.  Returns ``fig``."""
    entries: dict[str, object] = {}
    for ax in fig.axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        if ax.get_visible():
            for handle, label in zip(*ax.get_legend_handles_labels()):
                entries.setdefault(label, handle)
    for handle, label in extra:
        entries.setdefault(label, handle)
    for old in list(fig.legends):
        old.remove()
    rows = -(-len(entries) // ncols) if entries else 0
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="lower center", ncols=min(ncols, len(entries)),
                   frameon=False, fontsize=9)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, min(0.4, 0.3 * rows / height), 1, 1))  # ~0.3 inch a legend row
    return fig


def mean_log_loss(frame: pd.DataFrame, y: str = "test_loss", by: str = "model") -> pd.Series:
    """Mean over the n grid of log10(seed-mean ``y``): lower is easier.  Defined even for curves
    that never cross the n* threshold, so it can rank task variants (figures 4 and 5)."""
    table = curve_table(frame, y, by)
    return np.log10(table).mean(axis=1).rename(f"mean log10 {y}")


def curve_table(frame: pd.DataFrame, y: str = "test_loss", by: str = "model") -> pd.DataFrame:
    """Mean of ``y`` over seeds, one row per ``by`` value, one column per n."""
    return frame.groupby([by, "n"])[y].mean().unstack("n")


def n_star(frame: pd.DataFrame, threshold: float = 0.1, y: str = "test_loss", by: str = "model") -> pd.Series:
    """Smallest n at which the seed-mean of ``y`` is below ``threshold`` (NaN if it never is)."""
    table = curve_table(frame, y, by)
    out = {}
    for name, row in table.iterrows():
        below = row[row < threshold]
        out[name] = float(below.index.min()) if len(below) else math.nan
    return pd.Series(out, name=f"n*({y} < {threshold})")


def ratio(a: float, b: float) -> float:
    """``a / b`` for n* values; NaN when either is unknown."""
    return a / b if not (math.isnan(a) or math.isnan(b)) and b else math.nan


def learning_curves(curves: pd.DataFrame, hue: str = "n", ys=("train_loss", "test_loss"),
                    title: str | None = None):
    """One panel per metric in ``ys`` against epoch (log y), one line per run coloured by
    ``hue``; ``curves`` from :meth:`~symlib.store.RunStore.curves`.  Returns the figure."""
    if curves.empty:
        raise ValueError("no runs to plot: the curves frame is empty (run the experiment's sweep first)")
    fig, axes = plt.subplots(1, len(ys), figsize=(4.6 * len(ys), 3.6), sharex=True, squeeze=False)
    for ax, y in zip(axes.flat, ys):
        sns.lineplot(data=curves, x="epoch", y=y, hue=hue, units="key", estimator=None,
                     palette="viridis", lw=1, ax=ax)
        ax.set_yscale("log")
        ax.set_ylabel(y.replace("_", " "))
        ax.legend(title=hue, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def run_summary(curves: pd.DataFrame, fit_below: float = 1e-3) -> pd.DataFrame:
    """One row per run of ``curves`` (:meth:`~symlib.store.RunStore.curves`), sorted by model,
    n and seed, with

    * ``fit_epoch``: the first evaluation whose training loss is below ``fit_below`` (<NA> if none);
    * ``last_epoch``, ``test_loss``, ``test_error``: the last evaluation, what the run reports;
    * ``val_epoch``, ``val_test_loss``, ``val_test_error``: the evaluation with the lowest
      validation loss (the earliest on ties) — what early stopping on the validation alphabet,
      disjoint from the train and test alphabets, would have reported instead.
    """
    if curves.empty:
        raise ValueError("no runs to summarise: the curves frame is empty")
    c = curves.sort_values(["key", "epoch"])
    runs = c.groupby("key", sort=False)
    last = c.loc[runs.epoch.idxmax()].set_index("key")
    best = c.loc[runs.val_loss.idxmin()].set_index("key")
    fit = c[c.train_loss < fit_below].groupby("key").epoch.min()
    out = pd.DataFrame({
        "model": last.model, "n": last.n, "seed": last.seed,
        "fit_epoch": fit.reindex(last.index).astype("Int64"),
        "last_epoch": last.epoch, "test_loss": last.test_loss, "test_error": last.test_error,
        "val_epoch": best.epoch, "val_test_loss": best.test_loss, "val_test_error": best.test_error,
    })
    return out.sort_values(["model", "n", "seed"]).reset_index()


def glue_text(name: str, text: str) -> str:
    """Hand ``text`` (MyST Markdown, e.g. a formatted number) to the page under ``name``: the
    role ``{glue:md}`name:myst``` in a Markdown cell inserts it inline (``:myst`` parses its
    math), so prose quotes the computation instead of retyping it.  Shows nothing in the code
    cell; returns ``text``."""
    from IPython.display import Markdown
    from myst_nb import glue
    if not isinstance(text, str) or not text:
        raise ValueError(f"glue_text({name!r}) needs a non-empty string, got {text!r}")
    glue(name, Markdown(text), display=False)
    return text


def glue_figure(name: str, fig=None) -> None:
    """Hand the current (or given) figure to the page under ``name`` (``myst_nb.glue``): a
    ``{glue:figure}`` directive in the next Markdown cell shows it with a numbered caption and alt
    text.  The figure is saved at 144 dpi and closed, so the code cell itself shows nothing."""
    from myst_nb import glue
    fig = fig or plt.gcf()
    fig.set_dpi(144)
    glue(name, fig, display=False)
    plt.close(fig)

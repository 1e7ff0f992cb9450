"""The figures of the next-token chapter, drawn with seaborn from run-store frames.

Each function takes what :mod:`symlib.next_token` computes (or a :meth:`RunStore.frame` with a
``d`` column, :func:`~symlib.next_token.with_d`) and returns a matplotlib figure; the chapter hands
it to the page with :func:`symlib.plots.glue_figure`, which adds the numbered caption.

* :func:`vo_scale_figure` — the VO model's test error against n, and n* against the multiplier.
* :func:`copy_figure` — test error (solid) and train error (dashed) against n, one panel per model.
* :func:`n_star_figure` — n*(d) per model, with the slope the paper claims drawn as a guide.
* :func:`fixed_n_figure` — the plain model's error against d at fixed n (the theorem's limit).
* :func:`protocol_figure` — learning curves of the full-length runs at large d.
* :func:`binding_figure` — variable binding's test error and its "other variable" part.

The paper's next-token figures were not digitized (``data/paper/figdata.md``), so these figures
carry the paper's *claims* as grey guides — slope 1 of n* on d, "a handful" of samples, the 0.5
binding plateau — not its curves.  Chapter: *Next-token experiments*.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .next_token import BINDING_PLATEAU, N_STAR_BELOW, VO_HANDFUL

GUIDE = dict(color="grey", lw=1)   # the paper's claims: grey, dashed or dotted


def _log_n_axis(ax) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))


def _ticks_at(ax, values) -> None:
    """x ticks at exactly ``values`` (the d that were run), labelled plainly, no minor ticks."""
    ax.set_xticks(sorted(values), minor=False)
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))


def vo_scale_figure(vs: pd.DataFrame, table: pd.DataFrame):
    """Left: the VO model's seed-mean test error against n, colour = multiplier, style = d.
    Right: its n* against the multiplier per d (n* not reached: drawn at 2 × the largest n).

    ``vs``: ``copy_vo_scale`` runs with columns ``d``, ``scale``, ``n``, ``test_error``;
    ``table``: :func:`~symlib.next_token.n_star` of them, with ``scale``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    sns.lineplot(data=vs, x="n", y="test_error", hue="scale", style="d", palette="viridis", marker="o",
                 estimator="mean", errorbar=None, ax=axes[0], legend="full")
    _log_n_axis(axes[0])
    axes[0].set(title="test error against n", xlabel="n (training strings)", ylabel="test error (unseen symbols)")
    sns.move_legend(axes[0], "upper center", bbox_to_anchor=(0.5, -0.2), ncols=5, fontsize=8, frameon=False,
                    title=None)   # below the panel: multipliers, then d — never over the curves
    top = 2 * vs.n.max()
    shown = table.assign(n_star=table.n_star.fillna(top))
    sns.lineplot(data=shown, x="scale", y="n_star", hue="d", marker="o", palette="rocket", ax=axes[1])
    axes[1].axhline(VO_HANDFUL, ls="--", **GUIDE, label=f"the paper: a handful ({VO_HANDFUL})")
    axes[1].set(xscale="log", yscale="log", xlabel="multiplier of the VO term", ylabel="n*",
                title=f"n* against the multiplier (n* = {top}: not reached)")
    axes[1].legend(fontsize=8, title="d", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=4, frameon=False)
    fig.tight_layout()
    return fig


def copy_figure(runs: pd.DataFrame, fits: pd.DataFrame, models: list[str]):
    """One panel per model (at most 3): seed-mean test error (solid, band min–max over seeds) and
    train error (dashed) against n, colour = d; red open circles: points with a run that did not
    fit its training set; dotted: the n* threshold 0.1.

    ``runs``: ``copy`` runs with ``d``; ``fits``: :func:`~symlib.next_token.fit_table` of them."""
    if len(models) > 3:
        raise ValueError(f"copy_figure draws at most 3 models, got {len(models)}: {models}")
    ds = sorted(runs.d.unique())
    palette = dict(zip(ds, sns.color_palette("viridis", len(ds))))
    fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models), 4.1), sharey=True, squeeze=False)
    axes = list(axes.flat)
    for ax, model in zip(axes, models):
        part = runs[runs.model == model]
        sns.lineplot(data=part, x="n", y="test_error", hue="d", palette=palette, hue_order=ds, marker="o",
                     estimator="mean", errorbar=("pi", 100), ax=ax)
        sns.lineplot(data=part, x="n", y="train_error", hue="d", palette=palette, hue_order=ds, estimator="mean",
                     errorbar=None, ls="--", lw=1, ax=ax, legend=False)
        bad = fits[(fits.model == model) & ~fits.fits]
        ax.scatter(bad.n, bad.test_error, s=80, facecolors="none", edgecolors="red", zorder=5)
        ax.axhline(N_STAR_BELOW, ls=":", **GUIDE)
        _log_n_axis(ax)
        ax.set(title=model.replace("transformer + ", "+ ").replace(" (identity", "\n(identity"),
               xlabel="n (training strings)", ylabel="error (solid: test, dashed: train)")
    # every panel may lack some d: build the legend from all of them
    handles = [plt.Line2D([], [], color=palette[d], marker="o", label=str(d)) for d in ds]
    for ax in axes:
        ax.get_legend().remove()
    fig.legend(handles=handles, title="embedding dimension d", loc="lower center", ncols=len(ds), frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def n_star_figure(stars: pd.DataFrame, slope: dict):
    """n*(d) per model on log-log axes; n* not reached is drawn at 2 × the largest n run (open
    marker).  The plain model's least-squares fit (``slope``: :func:`~symlib.next_token.loglog_slope`)
    is drawn over its points, and the paper's claims as grey guides: slope 1 through the plain
    model's smallest d, and "a handful" (32) for the VO model."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    shown = stars.assign(reached=stars.n_star.notna(), n_star=stars.n_star.fillna(2 * stars.n_max))
    models = list(dict.fromkeys(shown.model))
    for i, model in enumerate(models):
        part = shown[shown.model == model]
        for reached, fill in ((True, f"C{i}"), (False, "none")):
            p = part[part.reached == reached]
            ax.scatter(p.d, p.n_star, s=60, marker="os^"[i % 3], facecolors=fill, edgecolors=f"C{i}",
                       label=model if reached else None)
    plain = stars[(stars.model == "transformer") & stars.n_star.notna()].sort_values("d")
    if len(plain) >= 2:
        d_line = np.array([plain.d.min(), plain.d.max()], dtype=float)
        b = np.mean(np.log2(plain.n_star) - slope["slope"] * np.log2(plain.d))
        ax.plot(d_line, 2 ** (b + slope["slope"] * np.log2(d_line)), color="C0", lw=1.5,
                label=f"fit to the plain model: slope {slope['slope']:.2f}")
    if len(plain):
        d0, n0 = plain.d.iloc[0], plain.n_star.iloc[0]
        d_all = np.array([stars.d.min(), stars.d.max()], dtype=float)
        ax.plot(d_all, n0 * d_all / d0, ls="--", **GUIDE, label="the paper: n* ∝ d (slope 1)")
    ax.axhline(VO_HANDFUL, ls=":", **GUIDE, label=f"the paper, with VO: a handful ({VO_HANDFUL})")
    ax.set(xscale="log", yscale="log", xlabel="embedding dimension d", ylabel="n* (test error < 0.1, stays < 0.2)")
    _ticks_at(ax, stars.d.unique())
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def fixed_n_figure(points: pd.DataFrame):
    """The plain copy model at fixed n as d grows: seed-mean test error (solid) and train error
    (dashed) against d, colour = n; red open circles: points with a run that did not fit.  The
    theorem's limit (fixed n, d → ∞: test error → 1) is the grey line at 1.

    ``points``: :func:`~symlib.next_token.fit_table` rows (``d``, ``n``, ``test_error``,
    ``train_error``, ``fits``) of one model, for the n to draw."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    ns = sorted(points.n.unique())
    palette = dict(zip(ns, sns.color_palette("mako_r", len(ns))))
    for n in ns:
        part = points[points.n == n].sort_values("d")
        ax.plot(part.d, part.test_error, marker="o", color=palette[n], label=f"n = {n}")
        ax.plot(part.d, part.train_error, ls="--", lw=1, color=palette[n])
    bad = points[~points.fits]
    ax.scatter(bad.d, bad.test_error, s=90, facecolors="none", edgecolors="red", zorder=5,
               label="a run did not fit its training set")
    ax.axhline(1.0, ls="--", **GUIDE, label="fixed n, d → ∞: test error → 1")
    ax.set_xscale("log", base=2)
    _ticks_at(ax, points.d.unique())
    ax.set(xlabel="embedding dimension d", ylabel="error (solid: test, dashed: train)", ylim=(-0.03, 1.05))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=3, frameon=False)
    fig.tight_layout()
    return fig


def protocol_figure(curves: pd.DataFrame):
    """Train (dashed) and test (solid) error against the epoch, one panel per d, colour = n.

    ``curves``: :meth:`RunStore.curves` of the full-length runs, with ``d``."""
    long = curves.melt(id_vars=["d", "n", "epoch"], value_vars=["train_error", "test_error"],
                       var_name="split", value_name="error")
    long["split"] = long.split.map({"train_error": "train", "test_error": "test"})
    g = sns.relplot(data=long, x="epoch", y="error", hue="n", style="split", style_order=["test", "train"],
                    col="d", kind="line", palette="viridis", height=3.4, aspect=1.3, facet_kws={"sharey": True})
    g.set_titles("d = {col_name}")
    sns.move_legend(g, "lower center", ncols=6, bbox_to_anchor=(0.45, -0.08), frameon=False)
    return g.figure


def binding_figure(binding: pd.DataFrame):
    """Per model: test error, the part of it that is the other variable's value, and train error
    against n (mean, band min–max over seeds); the paper's plateau at 0.5 as a grey guide."""
    parts = binding.melt(id_vars=["model", "n", "seed"],
                         value_vars=["test_error", "test_error_other_label", "train_error"],
                         var_name="quantity", value_name="error")
    parts["quantity"] = parts.quantity.map({"test_error": "test error",
                                            "test_error_other_label": "… of it: the other variable's value",
                                            "train_error": "train error"})
    g = sns.relplot(data=parts, x="n", y="error", hue="quantity", col="model", kind="line", marker="o",
                    errorbar=("pi", 100), height=3.6, aspect=1.25)
    for ax in g.axes.flat:
        _log_n_axis(ax)
        ax.axhline(0.5, ls="--", **GUIDE)
        ax.axhspan(*BINDING_PLATEAU, color="grey", alpha=0.06)
    g.set_titles("{col_name}")
    g.set_axis_labels("n (training strings)", "error")
    sns.move_legend(g, "lower center", ncols=3, bbox_to_anchor=(0.45, -0.1), frameon=False, title=None)
    return g.figure

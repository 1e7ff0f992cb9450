"""The next-token chapter's figures: what each draws, from small synthetic frames."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from symlib import next_token as NT, next_token_figures as NF  # noqa: E402

PLAIN, VO = "transformer", "transformer + VO (identity ×100)"


def _copy_runs():
    """Plain: n* = 4d (error 1 below, 0 from 4d on); VO: copies from n = 4; the plain model at
    d = 64, n = 8 did not fit on seed 1."""
    rows = []
    for d in (16, 64):
        for n in (4, 8, 16, 64, 256):
            for seed in (0, 1):
                rows.append((PLAIN, d, n, seed, 0.5 if (d, n, seed) == (64, 8, 1) else 0.0, 0.0 if n >= 4 * d else 1.0))
                rows.append((VO, d, n, seed, 0.0, 0.0))
    return pd.DataFrame(rows, columns=["model", "d", "n", "seed", "train_error", "test_error"])


def test_copy_figure_one_panel_per_model_unfit_points_circled_and_a_shared_legend():
    runs = _copy_runs()
    fig = NF.copy_figure(runs, NT.fit_table(runs), [PLAIN, VO])
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["transformer", "+ VO\n(identity ×100)"]
    circled = [c for c in axes[0].collections if isinstance(c, PathCollection)]  # the bands are PolyCollections
    assert [c.get_offsets().tolist() for c in circled] == [[[8.0, 1.0]]]      # the unfit point, at its test error
    assert all(a.get_legend() is None for a in axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["16", "64"]
    plt.close(fig)
    with pytest.raises(ValueError, match="at most 3 models"):
        NF.copy_figure(runs, NT.fit_table(runs), [PLAIN, VO, "a", "b"])


def test_n_star_figure_draws_the_fit_and_the_papers_claims():
    runs = _copy_runs()
    stars = NT.n_star(runs)
    plain = stars[stars.model == PLAIN]
    assert list(plain.n_star) == [64, 256]                                   # n* = 4d
    fig = NF.n_star_figure(stars, NT.loglog_slope(plain.d, plain.n_star))
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    fit = lines["fit to the plain model: slope 1.00"]
    np.testing.assert_allclose(fit.get_ydata(), [64, 256])
    guide = lines["the paper: n* ∝ d (slope 1)"]                            # through the smallest d's n*
    np.testing.assert_allclose(guide.get_ydata(), [64, 256])
    assert list(lines["the paper, with VO: a handful (32)"].get_ydata()) == [32, 32]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64"]
    plt.close(fig)


def test_vo_scale_protocol_and_binding_figures_build():
    runs = _copy_runs()
    vs = runs[runs.model == PLAIN].assign(scale=1.0)
    vs = pd.concat([vs, runs[runs.model == VO].assign(scale=100.0)])
    table = NT.n_star(vs).merge(vs[["model", "scale"]].drop_duplicates(), on="model")
    fig = NF.vo_scale_figure(vs, table)
    right = fig.axes[1]
    assert right.get_xscale() == "log" and "n* = 512: not reached" in right.get_title()
    plt.close(fig)

    curves = pd.DataFrame([(d, n, e, 1 - e / 1000, 1.0 - e / 2000) for d in (256, 1024) for n in (64, 256)
                           for e in range(0, 1001, 100)], columns=["d", "n", "epoch", "train_error", "test_error"])
    fig = NF.protocol_figure(curves)
    assert [a.get_title() for a in fig.axes] == ["d = 256", "d = 1024"]
    plt.close(fig)

    binding = pd.DataFrame([(m, n, s, 0.5, 0.45, 0.0) for m in (PLAIN, "transformer + KQ & VO (identity ×100)")
                            for n in (16, 64) for s in (0, 1)],
                           columns=["model", "n", "seed", "test_error", "test_error_other_label", "train_error"])
    fig = NF.binding_figure(binding)
    assert len(fig.axes) == 2 and all(a.get_xscale() == "log" for a in fig.axes)
    plt.close(fig)


def test_vo_scale_legends_sit_below_the_panels():
    runs = _copy_runs()
    vs = pd.concat([runs[runs.model == VO].assign(scale=s) for s in (1.0, 100.0)])
    table = NT.n_star(vs.assign(model=vs.scale.map({1.0: "x1", 100.0: "x100"}))).merge(
        pd.DataFrame({"model": ["x1", "x100"], "scale": [1.0, 100.0]}), on="model")
    fig = NF.vo_scale_figure(vs, table)
    fig.canvas.draw()
    for ax in fig.axes:
        legend, panel = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.y1 <= panel.y0   # entirely under the axes: it hides no curve
    plt.close(fig)


def test_fixed_n_figure_draws_error_against_d_and_circles_unfit_points():
    rows = [(PLAIN, d, n, 0, 1.0 if (d, n) == (1024, 64) else 0.0, min(1.0, d / (4 * n)))
            for d in (64, 256, 1024) for n in (64, 256)]
    runs = pd.DataFrame(rows, columns=["model", "d", "n", "seed", "train_error", "test_error"])
    fig = NF.fixed_n_figure(NT.fit_table(runs))
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["n = 64"].get_ydata(), [0.25, 1.0, 1.0])
    np.testing.assert_allclose(lines["n = 256"].get_xdata(), [64, 256, 1024])
    assert list(lines["fixed n, d → ∞: test error → 1"].get_ydata()) == [1, 1]
    circled = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [c.get_offsets().tolist() for c in circled] == [[[1024.0, 1.0]]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "256", "1024"]
    plt.close(fig)

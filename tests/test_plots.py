"""Figure helpers: the numbers claim cells print (n*, tables, difficulty) on frames with known answers."""

import math

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from symlib.plots import curve_table, loss_vs_n, loss_vs_n_panels, mean_log_loss, n_star, ratio  # noqa: E402


@pytest.fixture
def frame():
    rows = []
    for seed, jitter in ((0, 0.9), (1, 1.1)):
        for n, a, b in ((4, 1.0, 1.0), (8, 0.5, 1.0), (16, 0.05, 1.0), (32, 0.01, 0.2)):
            rows.append({"model": "fast", "task_label": "t1", "n": n, "seed": seed, "test_loss": a * jitter})
            rows.append({"model": "slow", "task_label": "t2", "n": n, "seed": seed, "test_loss": b * jitter})
    return pd.DataFrame(rows)


def test_n_star_is_the_first_n_whose_seed_mean_is_below(frame):
    ns = n_star(frame, 0.1)
    assert ns["fast"] == 16 and math.isnan(ns["slow"])
    assert n_star(frame, 0.3)["slow"] == 32


def test_curve_table_and_difficulty(frame):
    t = curve_table(frame)
    assert t.loc["fast", 8] == pytest.approx(0.5) and list(t.columns) == [4, 8, 16, 32]
    d = mean_log_loss(frame)
    assert d["fast"] == pytest.approx((0 + math.log10(0.5) + math.log10(0.05) + math.log10(0.01)) / 4)
    assert d["fast"] < d["slow"]


def test_ratio_is_nan_when_either_is_unknown():
    assert ratio(4096, 512) == 8 and math.isnan(ratio(math.nan, 512)) and math.isnan(ratio(512, math.nan))


def test_figures(frame):
    ax = loss_vs_n(frame, title="x")
    assert ax.get_xscale() == "log" and ax.get_title() == "x"
    fig = loss_vs_n_panels(frame, "task_label", panel_order=["t1", "t2", "t3"], ncols=2)
    visible = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in visible] == ["t1", "t2", "t3 (no runs yet)"]
    with pytest.raises(ValueError, match="frame is empty"):
        loss_vs_n(frame.iloc[:0])
    with pytest.raises(ValueError, match="frame is empty"):
        loss_vs_n_panels(frame.iloc[:0], "task_label")

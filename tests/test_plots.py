"""Figure helpers: the numbers claim cells print (n*, tables, difficulty) on frames with known answers."""

import math

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from symlib.plots import (curve_table, learning_curves, loss_vs_n, loss_vs_n_panels, mean_log_loss,  # noqa: E402
                          n_star, ratio, run_summary)


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
    # panels with curves of their own (here each model is on one task) keep a legend each
    assert not fig.legends and all(a.get_legend() is not None for a in visible[:2])
    # panels sharing curves: one legend for the figure, below them, each curve once, one colour each
    both = pd.concat([frame, frame.assign(task_label=frame.task_label.map({"t1": "t2", "t2": "t1"}))])
    fig = loss_vs_n_panels(both, "task_label", ncols=2)
    assert len(fig.legends) == 1 and all(a.get_legend() is None for a in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == len(set(labels)) and {"fast", "slow"} <= set(labels)
    colours = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label() in ("fast", "slow"):
                assert colours.setdefault(line.get_label(), line.get_color()) == line.get_color()
    assert len(colours) == 2
    with pytest.raises(ValueError, match="frame is empty"):
        loss_vs_n(frame.iloc[:0])
    with pytest.raises(ValueError, match="frame is empty"):
        loss_vs_n_panels(frame.iloc[:0], "task_label")


@pytest.fixture
def curves():
    """Two runs: one fits at epoch 20 and then overfits (its validation and test loss rise after
    epoch 20), one never fits and improves to the end."""
    rows = []
    for key, n, points in (
            ("a", 64, [(10, 0.5, 0.6, 0.5), (20, 1e-4, 0.2, 0.1), (30, 1e-5, 0.3, 0.2), (40, 1e-6, 0.3, 0.3)]),
            ("b", 8, [(10, 0.9, 1.0, 1.0), (20, 0.5, 0.8, 0.9), (30, 0.4, 0.8, 0.7)])):
        for epoch, train, val, test in points:
            rows.append({"key": key, "model": "m", "n": n, "seed": 0, "epoch": epoch, "train_loss": train,
                         "val_loss": val, "test_loss": test, "test_error": test / 4})
    return pd.DataFrame(rows)


def test_run_summary_reads_fit_last_and_validation_selected_epochs(curves):
    s = run_summary(curves.sample(frac=1, random_state=0)).set_index("key")  # order-independent
    assert list(s.index) == ["b", "a"]  # sorted by model, n, seed
    assert s.loc["a", "fit_epoch"] == 20 and pd.isna(s.loc["b", "fit_epoch"])
    assert s.loc["a", "last_epoch"] == 40 and s.loc["a", "test_loss"] == 0.3
    assert s.loc["a", "val_epoch"] == 20 and s.loc["a", "val_test_loss"] == 0.1
    assert s.loc["a", "val_test_error"] == pytest.approx(0.025)
    assert s.loc["b", "val_epoch"] == 20  # tie between epochs 20 and 30: the earliest
    with pytest.raises(ValueError, match="curves frame is empty"):
        run_summary(curves.iloc[:0])


def test_learning_curves(curves):
    fig = learning_curves(curves, title="x")
    assert [a.get_yscale() for a in fig.axes] == ["log", "log"]
    assert [a.get_ylabel() for a in fig.axes] == ["train loss", "test loss"]
    with pytest.raises(ValueError, match="curves frame is empty"):
        learning_curves(curves.iloc[:0])


def test_glue_text_hands_markdown_to_the_page_and_refuses_empty_text(monkeypatch):
    import myst_nb
    from symlib.plots import glue_text
    glued = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.append((name, value, display)))
    assert glue_text("delta", "**−0.8 %**") == "**−0.8 %**"
    [(name, value, display)] = glued
    assert (name, display) == ("delta", False)
    assert value._repr_markdown_() == "**−0.8 %**"   # rendered inline by {glue:md}`delta`
    for bad in ("", 0.5, None):
        with pytest.raises(ValueError, match="needs a non-empty string"):
            glue_text("delta", bad)

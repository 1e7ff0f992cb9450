"""The paper's digitized curves (symlib.paper): every mapped series exists, n* by our rule,
fidelity tables and overlays (issue 19)."""

import datetime
import json
import math

import matplotlib
import pandas as pd
import pytest

from symlib import paper
from symlib.plots import loss_vs_n, loss_vs_n_panels

matplotlib.use("Agg")


def test_every_mapped_series_is_in_figdata():
    for figure, series in paper.SERIES.items():
        for (panel, ours), (file, name) in series.items():
            c = paper.curve(file, name)
            assert len(c) >= 4 and (c.index > 0).all() and (c >= 0).all(), (figure, ours)
    with pytest.raises(KeyError, match="no series"):
        paper.curve("teaser1.pdf", "nope")


def test_n_star_of_a_paper_curve():
    c = pd.Series({4: 1.0, 8: 0.5, 16: 0.05, 32: 0.2})
    assert paper.n_star_of(c) == 16 and math.isnan(paper.n_star_of(c, threshold=0.01))
    assert paper.n_star_of(paper.curve("teaser1.pdf", "Transformer + KQ identity")) == 64


def runs(model, n_star, seeds=(0, 1)):
    return pd.DataFrame([{"model": model, "n": n, "seed": s, "test_loss": 0.01 if n_star and n >= n_star else 0.9}
                         for n in [2 ** k for k in range(2, 14)] for s in seeds])


def test_fidelity_table_uses_the_same_rule_on_both_sides():
    frame = pd.concat([runs("transformer", 4096), runs("transformer + KQ", 512), runs("MLP", None)])
    t = paper.fidelity(frame, "fig2")
    # the paper: transformer 2048, + KQ 32, depth-3 FCNet never
    assert t.loc["transformer", "paper n*"] == "2048" and t.loc["transformer", "ours n*"] == "4096"
    assert t.loc["transformer", "ours / paper"] == "2×"
    assert t.loc["transformer + KQ", "ours / paper"] == "16×"
    assert t.loc["MLP", "paper n*"] == "> 8192" and t.loc["MLP", "ours / paper"] == "neither below"
    assert "RNN" not in t.index  # curves we did not run are left out
    # judged by the paper's own replicate spread (2×: its figure files disagree that much)
    within = t["within the paper's own spread (×2)"]
    assert (within["transformer"], within["transformer + KQ"], within["MLP"]) == ("yes", "no", "yes")


def test_within_the_spread_reads_bounds_only_when_they_decide():
    assert paper.replicate_spread() == 2.0
    assert paper._within(math.nan, 512, 8192, 8192, 2.0) == "no"      # ours > 8192: more than 32× the paper's
    assert paper._within(math.nan, 8192, 8192, 8192, 2.0) == "—"      # ours > 8192 vs 8192: could be 2×
    assert paper._within(16, math.nan, 8192, 8192, 2.0) == "no"       # the paper never, ours at 16


def test_fidelity_by_panel_and_the_yardstick():
    frame = runs("transformer", 2048).assign(task_label="AABB vs ABAB")
    t = paper.fidelity(frame, "fig3", panel="task_label")
    assert list(t.index) == ["AABB vs ABAB: transformer"] and t.iloc[0]["paper n*"] == "2048"
    y = paper.yardstick()
    assert len(y) == len(paper.REPLICATES) and set(y["ratio"]) <= {"1×", "2×", "1/2"}


def test_overlay_draws_one_dashed_grey_line_per_mapped_curve():
    frame = pd.concat([runs("transformer", 4096), runs("transformer + KQ", 512)])
    ax = loss_vs_n(frame)
    before = len(ax.lines)
    assert paper.overlay(ax, "fig2") == 2 and len(ax.lines) == before + 2  # beside the curves shown only
    assert all(line.get_linestyle() == "--" for line in ax.lines[before:])
    assert any("paper" in t.get_text() for t in ax.get_legend().get_texts())
    assert paper.overlay(ax, "fig4") == 0  # figure 4 is not in figdata


def test_overlay_panels_adds_the_paper_to_the_one_shared_legend():
    frame = pd.concat([runs("MLP", None), runs("MLP + XXᵀ", 512)])
    frame = pd.concat([frame.assign(task_label="ABA vs ABB"), frame.assign(task_label="same/different")])
    fig = loss_vs_n_panels(frame, "task_label", ncols=2)
    assert paper.overlay_panels(fig, "fig6") == 2  # figure 6's paper curves are ABA vs ABB's only
    assert len(fig.legends) == 1 and all(a.get_legend() is None for a in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count(paper.PAPER_LABEL) == 1 and {"MLP", "MLP + XXᵀ"} <= set(labels)


def test_reproduce_note_names_the_command_runs_and_cpu_hours():
    frame = pd.DataFrame({"wall_time_s": [1800.0, 3600.0], "threads": [2, 1]})
    note = paper.reproduce_note("fig2", frame)
    assert "`python -m symlib sweep fig2`" in note and "the 2 runs" in note and "2.0 CPU-hours" in note


def test_reproduce_note_takes_another_command_and_a_data_link():
    frame = pd.DataFrame({"wall_time_s": [3600.0], "threads": [1]})
    note = paper.reproduce_note("main", frame, command="python -m symlib.language_model main",
                                data="Plotted data: [x.csv](../data/figures/x.csv).")
    assert "`python -m symlib.language_model main`" in note and "sweep" not in note
    assert note.endswith("Plotted data: [x.csv](../data/figures/x.csv).")


def test_figure_data_writes_the_csv_and_links_it_only_from_the_books_store(tmp_path, monkeypatch):
    plotted = pd.DataFrame({"n": [8, 16], "test_error": [0.5, 1 / 3]})
    assert paper.figure_data("nt-copy", plotted, root=tmp_path) == ""   # a scratch store: no link
    back = pd.read_csv(tmp_path / "figures" / "nt-copy.csv")
    assert back.n.tolist() == [8, 16] and back.test_error.round(6).tolist() == [0.5, 0.333333]
    monkeypatch.setattr(paper, "REPO_DATA", tmp_path)                   # as if tmp_path were data/
    assert paper.figure_data("nt-copy", plotted, root=tmp_path) == \
        "Plotted data: [nt-copy.csv](../data/figures/nt-copy.csv)."
    with pytest.raises(ValueError, match="lower-case letters"):
        paper.figure_data("../evil", plotted, root=tmp_path)
    with pytest.raises(ValueError, match="nothing to write"):
        paper.figure_data("empty", plotted.iloc[0:0], root=tmp_path)


def test_reproduce_note_without_runs_says_none_are_stored():
    note = paper.reproduce_note("fig3", pd.DataFrame(columns=["wall_time_s", "threads"]))
    assert "`python -m symlib sweep fig3` computes the runs behind this figure (none stored yet)" in note
    assert "chapter executed" in note


def test_computed_note_reads_the_cached_results_cpu_time(tmp_path):
    from symlib.store import cached_result
    for name in ("eigen_grid", "kq_eigs"):
        cached_result(tmp_path / "kernel" / f"{name}.json", {"name": name}, lambda: [1.0])
    for name, seconds, threads in (("eigen_grid", 1800.0, 2), ("kq_eigs", 3600.0, 1)):  # as if they had taken this long
        path = tmp_path / "kernel" / f"{name}.json"
        record = json.loads(path.read_text())
        record.update(wall_time_s=seconds, provenance={**record["provenance"], "threads": threads})
        path.write_text(json.dumps(record))
    note = paper.computed_note("kernel", ["eigen_grid", "kq_eigs"], data="Plotted data: [k.csv](../data/figures/k.csv).",
                               root=tmp_path)
    assert note.startswith("*Reproduce:* `python -m symlib book kernel` draws this figure from results cached in "
                           "`data/kernel/` (`eigen_grid.json`, `kq_eigs.json`, 2.0 CPU-hours as recorded; "
                           "`-p recompute True` computes them afresh); chapter executed ")
    assert f"chapter executed {datetime.date.today():%Y-%m-%d}." in note
    assert note.endswith("Plotted data: [k.csv](../data/figures/k.csv).")
    path.write_text(json.dumps({"result": [], "wall_time_s": 180.0}))          # short, and no threads: one
    assert "(`kq_eigs.json`, 3 CPU-minutes as recorded;" in paper.computed_note("kernel", ["kq_eigs"], root=tmp_path)
    path.write_text(json.dumps({"result": [], "wall_time_s": 20.0}))
    assert "(`kq_eigs.json`, under a CPU-minute as recorded;" in paper.computed_note("kernel", ["kq_eigs"], root=tmp_path)


def test_computed_note_for_results_not_stored_or_computed_in_place(tmp_path):
    note = paper.computed_note("kernel", ["eigen_grid"], root=tmp_path)   # the smoke profile stores nothing
    assert "`eigen_grid.json` of `data/kernel/`, computed in this execution: not stored" in note
    assert "CPU" not in note and "sweep" not in note
    note = paper.computed_note("template_tasks")
    assert "`python -m symlib book template_tasks` recomputes this figure (the chapter computes it afresh" in note
    (tmp_path / "kernel" / "runs.json").parent.mkdir()
    (tmp_path / "kernel" / "runs.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="no wall time"):
        paper.computed_note("kernel", ["runs"], root=tmp_path)


def test_glue_run_note_writes_the_plotted_csv_and_glues_the_note(tmp_path, monkeypatch):
    import symlib.plots
    glued = {}
    monkeypatch.setattr(symlib.plots, "glue_text", lambda name, text: glued.setdefault(name, text))
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path))
    frame = runs("transformer", 512).assign(task_label="ABA vs ABB", train_loss=0.0, wall_time_s=36.0, threads=1)
    note = paper.glue_run_note("reg-x", "fig2", frame)
    assert glued["reg-x-note"] == note and "python -m symlib sweep fig2" in note and f"{len(frame)} runs" in note
    written = pd.read_csv(tmp_path / "figures" / "reg-x.csv")
    assert list(written.columns) == paper.RUN_COLUMNS and len(written) == len(frame)
    assert "none stored yet" in paper.glue_run_note("reg-y", "fig2", frame.iloc[:0])
    assert not (tmp_path / "figures" / "reg-y.csv").exists()


def test_glue_computed_note_names_the_chapter_and_its_cached_results(tmp_path, monkeypatch):
    import symlib.plots
    monkeypatch.setattr(symlib.plots, "glue_text", lambda name, text: text)
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path))
    note = paper.glue_computed_note("k-x", "kernel", pd.DataFrame({"a": [1.0]}), ["eigen_grid"])
    assert "python -m symlib book kernel" in note and "eigen_grid" in note
    assert (tmp_path / "figures" / "k-x.csv").exists()


def test_reproduce_note_counts_gpu_runs_apart_from_cpu_time():
    frame = pd.DataFrame({"wall_time_s": [3600.0, 1800.0, 5400.0], "threads": [1, 1, 1], "device": ["cpu", "cuda", "cuda:0"]})
    note = paper.reproduce_note("copy_wide", frame)
    assert "recomputes the 3 runs behind this figure (1.0 CPU-hours and 2 runs on a GPU, 2.0 hours of run time as recorded" in note

"""The experiment grids: the large-n protocol, the seeds a figure can report, the axes of figures 4–5."""

import json
from dataclasses import replace

import pandas as pd
import pytest

from symlib import ModelConfig, TrainConfig
from symlib import experiments as E
from symlib.experiments import (EXPERIMENTS, FULL, FULL_FROM, HP_AXES, MODELS, PAPER, RANDOM_AXES, by_variant,
                                experiment, labelled_draws, random_draws, seed_status)
from symlib.models import model_label
from symlib.store import RunStore
from symlib.tasks import get_task, task_label
from symlib.training import fit


def test_early_stopping_only_below_full_from():
    """protocol_large found a late transition the rule would cut: n >= 4096 trains all epochs; the
    next-token sweeps train all epochs at every n (their rule failed its check)."""
    for name in EXPERIMENTS:
        for c in experiment(name):
            if name in ("protocol", "protocol_large"):
                assert c.train == FULL, name
            elif name == "fidelity_bf16":  # the protocol runs under bf16
                assert c.train == replace(FULL, precision="bf16"), name
            elif c.data.n >= FULL_FROM:
                assert c.train.stop_train_loss is None and c.train.epochs == 1000, (name, c.data.n)
            elif name.startswith(("copy", "binding")):  # next-token: no rule passed its check
                assert c.train.stop_train_loss is None and c.train.epochs == 1000, (name, c.data.n)
            elif name == "fidelity_width":  # check 1's wide runs: bf16, adopted before they started
                assert c.train == replace(PAPER, precision="bf16"), (name, c.data.n)
            elif name not in ("fig5", "fig6_batch"):  # these vary lr or batch size around PAPER
                assert c.train == PAPER, (name, c.data.n)
    # fig2's plain and + VO runs at large n are exactly protocol_large's: computed once, shared
    large = {c.key for c in experiment("protocol_large")}
    assert large <= {c.key for c in experiment("fig2")}


def test_seed_status_counts_each_seeds_stored_runs(tmp_path):
    store = RunStore(tmp_path)
    status = seed_status("fig6", "smoke", store)
    assert status == {0: (0, len(experiment("fig6", "smoke")))}
    store.put(fit(experiment("fig6", "smoke")[0]))
    assert seed_status("fig6", "smoke", store)[0][0] == 1


def test_axes_label_every_run_once_per_axis():
    for name, axes in (("fig4", RANDOM_AXES), ("fig5", HP_AXES)):
        configs = experiment(name)
        frame = pd.DataFrame({"key": [c.key for c in configs]})
        v = by_variant(name, frame)
        assert set(v.axis) == set(axes)
        for axis, values in axes.items():
            assert sorted(set(v[v.axis == axis].value)) == sorted(values)
        # the default configuration sits on every axis; every other run on exactly one
        counts = v.key.value_counts()
        assert set(counts) <= {1, len(axes)} and (counts == len(axes)).any()
    with pytest.raises(ValueError, match="has no axes"):
        by_variant("fig2", pd.DataFrame({"key": []}))


def test_figure_4_draws_have_both_labels_and_draw_d_trains_with_seed_d():
    """A draw whose templates share one label is a constant function: figure 4 skips it."""
    r2 = labelled_draws(3, r=2, length=5, n_wildcards=3)
    assert [t.spec["seed"] for t in r2] == [3, 8, 9]  # seeds 0, 1, 2, 4, 5, 6, 7 draw one label
    variants = random_draws("paper")
    assert all(len(ds) == 3 and all(set(t.labels) == {1, -1} for t in ds) for _, _, ds in variants)
    drawn = {(json.dumps(t.spec, sort_keys=True), d) for _, _, ds in variants for d, t in enumerate(ds)}
    assert {(json.dumps(c.task, sort_keys=True), c.seed) for c in experiment("fig4")} == drawn
    with pytest.raises(ValueError, match="both labels"):
        labelled_draws(1, r=1, length=5, n_wildcards=3)


def test_labels():
    assert model_label(ModelConfig(kq_identity=True, identity_scale=10).to_dict()) == "transformer + KQ (identity ×10)"
    assert model_label(ModelConfig(identity_scale=10).to_dict()) == "transformer"  # no identity term to scale
    assert task_label({"name": "majority", "k": 6}) == "majority-6"
    assert task_label({"name": "aba_abb"}) == "ABA vs ABB"
    assert task_label({"name": "random_templates", "r": 4, "length": 5, "n_wildcards": 3, "n_regular": 1,
                       "seed": 0}) == "r=4, L=5, |W|=3, |R|=1"
    assert task_label({"name": "copy", "length": 3}) == "copy(length=3)"


def test_one_label_everywhere():
    """MODELS is keyed by model_label; the store's frames use the same functions, whatever the
    argument (a config or its dict, a spec, a name or a task).  Chapters filter on these strings."""
    assert list(MODELS) == ["transformer", "transformer + KQ", "transformer + VO", "transformer + KQ & VO",
                            "MLP", "MLP + XXᵀ", "RNN", "LSTM"]
    assert all(model_label(m) == model_label(m.to_dict()) == name for name, m in MODELS.items())
    assert task_label("aba_abb") == task_label(get_task("aba_abb")) == task_label({"name": "aba_abb"})
    assert task_label(get_task("majority", k=6)) == "majority-6"
    import symlib.store as store
    assert store.model_label is model_label and store.task_label is task_label  # re-exported for chapters


def test_figure_runs_reports_only_complete_seeds(tmp_path, capsys):
    from symlib.experiments import figure_runs
    store = RunStore(tmp_path)
    frame, complete = figure_runs("fig6", "smoke", store=store)
    assert frame.empty and not complete
    frame, complete = figure_runs("fig6", "smoke", complete=["fig6"], store=store)  # trained now
    assert complete and len(frame) == len(experiment("fig6", "smoke"))
    again, complete = figure_runs("fig6", "smoke", store=store)  # read back, nothing trained
    assert complete and set(again.key) == set(frame.key)


def test_chapter_runs_reads_in_the_paper_profile_and_trains_only_smoke(tmp_path, monkeypatch):
    from symlib.experiments import chapter_runs
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path))
    frame, total = chapter_runs("fig6", "paper")  # an empty store: nothing trained, the grid's size
    assert frame.empty and total == len(experiment("fig6"))
    frame, total = chapter_runs("fig6", "smoke")
    assert len(frame) == total == len(experiment("fig6", "smoke"))
    with pytest.raises(ValueError, match="allowed: paper, smoke"):
        chapter_runs("fig6", "full")


def test_copy_grids_follow_the_issue_seeds_and_n_range():
    by_d = {}
    for c in E.copy("paper"):
        if not c.model.vo_identity:
            by_d.setdefault(c.model.dim, set()).add((c.data.n, c.seed))
    for d, points in by_d.items():
        assert max(n for n, _ in points) == 16 * d  # n = 4 … 16d
        assert {s for _, s in points} == ({0, 1, 2} if d <= 512 else {0, 1})
    wide = E.copy_wide("paper")
    assert {c.model.dim for c in wide} == set(E.COPY_WIDE_DIMS)
    assert {c.data.n for c in wide if not c.model.vo_identity} == set(E.COPY_WIDE_N)
    assert not {c.key for c in wide} & {c.key for c in E.copy("paper")}

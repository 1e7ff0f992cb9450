"""The paired comparison and the verdict rule of chapter ``language_model``."""

import math

import pandas as pd
import pytest
from scipy import stats

from symlib import language_model as LM


def runs(rows):
    return pd.DataFrame(rows, columns=["variant", "seed", "val_loss"])


def test_paired_deltas_pair_by_seed_and_skip_unpaired():
    frame = runs([("baseline", 0, 3.0), ("baseline", 1, 3.2), ("kq_vo", 0, 2.9), ("kq_vo", 1, 3.3),
                  ("kq_vo", 2, 1.0), ("kq", 0, 3.05)])
    d = LM.paired_deltas(frame)
    assert list(zip(d.variant, d.seed)) == [("kq", 0), ("kq_vo", 0), ("kq_vo", 1)]  # seed 2 has no baseline
    assert d.delta.tolist() == pytest.approx([0.05, -0.1, 0.1])


def test_paired_deltas_refuses_ambiguous_or_missing_input():
    with pytest.raises(ValueError, match="two runs of variant 'kq_vo', seed 0"):
        LM.paired_deltas(runs([("baseline", 0, 3.0), ("kq_vo", 0, 2.9), ("kq_vo", 0, 2.8)]))
    with pytest.raises(ValueError, match="no run of the 'baseline' variant"):
        LM.paired_deltas(runs([("kq_vo", 0, 2.9)]))
    with pytest.raises(ValueError, match="lacks column 'val_loss'"):
        LM.paired_deltas(pd.DataFrame({"variant": ["baseline"], "seed": [0]}))


def test_interval_is_the_student_t_interval():
    x = [-0.02, -0.01, -0.03]
    iv = LM.interval(x)
    half = stats.t.ppf(0.975, 2) * pd.Series(x).std() / math.sqrt(3)
    assert iv["mean"] == pytest.approx(-0.02)
    assert (iv["low"], iv["high"]) == pytest.approx((-0.02 - half, -0.02 + half))
    assert iv["ppl_change"] == pytest.approx(math.expm1(-0.02))
    one = LM.interval([0.1])
    assert one["seeds"] == 1 and math.isnan(one["low"]) and math.isnan(one["high"])


@pytest.mark.parametrize("deltas, verdict", [
    ([-0.020, -0.021, -0.019], "reproduced"),        # interval below 0
    ([-0.004, 0.002, -0.001], "partial"),            # holds 0, upper end below log 1.01
    ([0.020, 0.021, 0.019], "not reproduced"),       # worse
    ([-0.05, 0.05, 0.0], "not reproduced"),          # holds 0, but may be worse by > 1 %
])
def test_lm_verdict_branches(deltas, verdict):
    got, why = LM.lm_verdict(deltas)
    assert got == verdict
    assert "paired seeds" in why


def test_lm_verdict_needs_two_seeds():
    with pytest.raises(ValueError, match="at least two seeds"):
        LM.lm_verdict([-0.1])


def test_bf16_agrees_within_the_float32_seed_spread():
    fp32 = pd.Series({0: 5.00, 1: 5.10})
    ok, why = LM.bf16_agrees(fp32, pd.Series({0: 5.05, 1: 5.02}))
    assert ok and "agrees" in why
    ok, why = LM.bf16_agrees(fp32, pd.Series({0: 5.20, 1: 5.10}))   # seed 0 off by 0.2 > spread 0.1
    assert not ok and "differs" in why
    with pytest.raises(ValueError, match="at least two common seeds"):
        LM.bf16_agrees(fp32, pd.Series({0: 5.0}))


def test_run_grids_pair_variants_on_the_same_seeds_and_data_order():
    pilot = LM.run_grid("pilot")
    assert len(pilot) == 6
    bf16 = [(m.variant, s) for m, t, s in pilot if t.precision == "bf16"]
    assert sorted(bf16) == [("baseline", 0), ("baseline", 1), ("kq_vo", 0), ("kq_vo", 1)]
    assert len({t.steps for _, t, _ in pilot}) == 1        # every pilot run sees the same number of tokens
    with pytest.raises(ValueError, match="unknown language-model experiment 'nope'"):
        LM.run_grid("nope")


def _curves():
    rows = []
    for variant in ("baseline", "kq_vo", "vo"):
        for seed in (0, 1):
            for step in (100, 200):
                row = {"variant": variant, "precision": "bf16", "seed": seed, "step": step, "tokens": step * 10,
                       "val_loss": 5.0 - step / 1000 + (0.01 * seed) - {"baseline": 0, "kq_vo": 0.003, "vo": -0.002}[variant]}
                if variant == "kq_vo":
                    row["a_h"] = [[0.1 * seed, 0.2]]
                if variant != "baseline":
                    row["b_h"] = [[-0.1, step / 1000]]
                rows.append(row)
    return pd.DataFrame(rows[:-1])  # vo seed 1 lacks its step 200


def test_paired_curves_subtract_the_same_seed_and_step():
    d = LM.paired_curves(_curves())
    assert len(d) == 4 + 3  # kq_vo: 2 seeds × 2 steps; vo: seed 1 lacks step 200
    assert d[d.variant == "kq_vo"].delta.round(6).tolist() == [-0.003] * 4
    assert d[d.variant == "vo"].delta.round(6).tolist() == [0.002] * 3
    with pytest.raises(ValueError, match="one precision"):
        LM.paired_curves(pd.concat([_curves(), _curves()]))


def test_coefficient_frame_takes_each_term_from_the_variants_that_have_it():
    c = LM.coefficient_frame(_curves())
    assert set(c[c.coefficient == "a_h"].variant) == {"kq_vo"}
    assert set(c[c.coefficient == "b_h"].variant) == {"kq_vo", "vo"}
    assert len(c) == 4 * 2 + 4 * 2 + 3 * 2  # a_h: kq_vo 4 evals × 2 heads; b_h: kq_vo 4 + vo 3 evals × 2 heads
    row = c[(c.coefficient == "b_h") & (c.variant == "vo") & (c.seed == 0) & (c.tokens == 2000) & (c["head"] == 1)]
    assert row.value.tolist() == [0.2] and row.layer.tolist() == [0]


@pytest.mark.parametrize("argv, message", [(["main", "--part", "3/2"], "--part must be I/K"),
                                           (["nope"], "unknown language-model experiment 'nope'; allowed: pilot")])
def test_command_line_refuses_bad_input_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        LM.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_paired_figure_draws_each_pair_against_the_papers_guides():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = LM.paired_figure(_curves())
    right = fig.axes[1]
    guides = sorted(line.get_ydata()[0] for line in right.lines if line.get_color() == "grey")
    assert guides == pytest.approx([0.0, LM.NO_WORSE])
    deltas = [line.get_ydata().round(6).tolist() for line in right.lines if line.get_color() != "grey"]
    assert sorted(deltas) == [[-0.003, -0.003]] * 2 + [[0.002], [0.002, 0.002]]  # kq_vo seeds 0, 1; vo seeds 1, 0
    assert fig.axes[0].get_legend() is None                             # one legend, for the figure
    assert [t.get_text() for t in fig.legends[0].get_texts()][:4] == ["variant", "baseline", "kq_vo", "vo"]
    plt.close(fig)


def test_coefficient_figure_one_panel_per_variant_and_coefficient():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = LM.coefficient_figure(LM.coefficient_frame(_curves()))
    titles = sorted(a.get_title() for a in fig.axes)
    assert titles == ["kq_vo · a_h", "kq_vo · b_h", "vo · a_h", "vo · b_h"]
    empty = [a.get_title() for a in fig.axes if all(l.get_color() == "grey" for l in a.lines)]
    assert empty == ["vo · a_h"]  # the VO model has no KQ term
    plt.close(fig)


def test_loss_figure_one_line_per_run_and_seed():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves = _curves().assign(train_loss=lambda c: c.val_loss - 0.5,
                              run=lambda c: c.variant + " · " + c.precision)
    fig = LM.loss_figure(curves)
    lines = [l for l in fig.axes[1].lines if len(l.get_xdata())]
    assert len(lines) == 6  # 3 variants × 2 seeds
    assert min(min(l.get_ydata()) for l in lines) == pytest.approx(5.0 - 0.2 - 0.003 - 0.5)
    plt.close(fig)


def test_pairs_complete_needs_the_variant_and_the_baseline_on_every_seed():
    pairs = runs([("baseline", 0, 5.0), ("kq_vo", 0, 4.9), ("baseline", 1, 5.0), ("kq_vo", 1, 4.9), ("vo", 2, 4.9)])
    assert LM.pairs_complete(pairs, seeds=(0, 1))
    assert not LM.pairs_complete(pairs, seeds=(0, 1, 2))          # seed 2 has no pair
    assert not LM.pairs_complete(pairs[pairs.variant != "baseline"], seeds=(0,))
    assert LM.pairs_complete(pairs, variant="vo", seeds=()) and not LM.pairs_complete(pairs, variant="vo", seeds=(2,))


def test_command_names_the_experiment_and_refuses_unknown_ones():
    assert LM.command("pilot") == "python -m symlib.language_model pilot"
    assert LM.command("main").endswith("main --part 1/2 (and 2/2)")
    with pytest.raises(ValueError, match="allowed: pilot, main, smoke"):
        LM.command("mian")


def test_curve_frame_labels_each_run_by_variant_and_precision():
    frame, _ = LM.stored("main")  # the committed records
    assert len(frame), "the main runs' records are committed under data/lm_runs"
    run = frame.iloc[:1]
    curves = LM.curve_frame(run)
    assert len(curves) > 1 and set(curves.key) == set(run.key)
    assert set(curves.run) == {f"{run.variant.iloc[0]} · {LM.PRECISION_NAMES[run.precision.iloc[0]]}"}

"""The next-token experiments: the tied readout, the error over the whole vocabulary, the binding
error decomposition, device selection, early stopping on validation error, and the summaries of
symlib.next_token (fit, n*, the log-log slope, the verdict rule)."""

import math

import pandas as pd
import pytest
import torch

import symlib as S
from symlib import next_token as NT
from symlib.experiments import experiment
from symlib.runs import TrainConfig, converged
from symlib.training import accelerator, other_label_error

TINY = S.ModelConfig(dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16)
SMALL_DATA = S.DataConfig(n=16, n_val=16, val_alphabet=16, n_test=32, test_alphabet=32)


def test_tied_readout_scores_every_token_of_the_vocabulary_with_the_embedding():
    task = S.get_task("copy")
    data = S.make_data(task, SMALL_DATA, seed=0)
    model = S.model_for(TINY, data, seed=0)
    x = data.x["test"]
    out = model(x)
    assert out.shape == (len(x), data.vocab_size)                     # every token, unseen ones too
    h = model.tok_emb(x) + model.pos_emb
    for block in model.blocks:
        h = block(h)
    hidden = torch.nn.functional.layer_norm(h[:, -1], (TINY.dim,))     # final LN without affine
    assert torch.allclose(out, hidden @ model.tok_emb.weight.T, atol=1e-5)
    assert model.ln_f.weight is None                                  # no affine: nothing to learn there


def test_test_error_is_the_argmax_over_the_whole_vocabulary():
    """A model that always answers a training token is wrong on every test string, even though a
    test target is among the scored tokens: the error is not restricted to the test alphabet."""
    task = S.get_task("copy")
    data = S.make_data(task, SMALL_DATA, seed=0)
    result, model = S.fit(task, TINY, TrainConfig(epochs=1, eval_every=1), data=SMALL_DATA, return_model=True)
    with torch.no_grad():
        out = model(data.x["test"])
    assert result.metrics["test_error"] == pytest.approx((out.argmax(-1) != data.y["test"]).float().mean().item())
    y = data.y["test"]
    fake = torch.zeros(len(y), data.vocab_size)
    fake[:, data.offsets["train"]] = 1.0                              # always the first training token
    assert S.training.error_fn("next_token", fake, y).item() == 1.0
    fake[torch.arange(len(y)), y] = 2.0                               # now the target wins everywhere
    assert S.training.error_fn("next_token", fake, y).item() == 0.0


def test_binding_error_splits_into_the_other_value_and_any_other_token():
    task = S.get_task("variable_binding")
    assert task.other_label_positions == ((6,), (2,))                # δ for "print ( α )", γ for "print ( β )"
    data = S.make_data(task, S.DataConfig(n=32), seed=0)
    x, y, t = data.x["test"][:4], data.y["test"][:4], data.template["test"][:4]
    other = torch.where(t == 0, x[:, 6], x[:, 2])                     # the other variable's value
    pred = torch.stack([y[0], other[1], other[2], x[3, 0]])           # right, other, other, a name
    err = other_label_error(pred, x, y, t, task.other_label_positions)
    assert err.item() == pytest.approx(2 / 4)
    assert S.get_task("copy").other_label_positions == ((),)


def test_binding_runs_record_the_decomposition():
    r = S.fit("variable_binding", TINY, TrainConfig(epochs=2, eval_every=1), data=16)
    assert 0 <= r.metrics["test_error_other_label"] <= r.metrics["test_error"] <= 1
    assert "test_error_other_label" not in S.fit("copy", TINY, TrainConfig(epochs=2, eval_every=1), data=8).metrics


def test_device_selection_is_explicit_and_recorded():
    assert accelerator("cpu") == "cpu"
    assert accelerator("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'; allowed: auto, cpu, cuda"):
        accelerator("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            S.fit("copy", TINY, TrainConfig(epochs=1), data=8, device="cuda")
    r = S.fit("copy", TINY, TrainConfig(epochs=1), data=8, device="cpu")
    assert r.provenance["device"] == "cpu"
    if torch.cuda.is_available():  # the device of training, though Lightning hands the module back on the CPU
        assert S.fit("copy", TINY, TrainConfig(epochs=1), data=8, device="cuda").provenance["device"].startswith("cuda")


def test_stop_metric_is_validated_and_keeps_old_hashes():
    assert "stop_metric" not in TrainConfig().to_dict()               # stored runs keep their keys
    assert TrainConfig(stop_metric="val_error").to_dict()["stop_metric"] == "val_error"
    with pytest.raises(ValueError, match="unknown stop_metric 'test_error'; allowed: val_loss, val_error"):
        TrainConfig(stop_metric="test_error")
    rule = TrainConfig(stop_train_loss=0.01, stop_window=40, stop_metric="val_error")
    curve = [{"epoch": e, "train_loss": tl, "val_loss": vl, "val_error": ve}
             for e, tl, vl, ve in [(20, 1.0, 5.0, 0.9), (40, 0.005, 1.0, 0.3), (60, 0.004, 0.8, 0.3),
                                   (80, 0.003, 0.6, 0.3)]]
    assert not converged(curve[:3], rule)                             # no evaluation 40 epochs back yet
    assert converged(curve, rule)                                     # val error flat while val loss falls
    assert not converged(curve, TrainConfig(stop_train_loss=0.01, stop_window=40))  # val loss still moving


def _frame(rows):
    """rows: (model, d, n, seed, train_error, test_error)."""
    return pd.DataFrame(rows, columns=["model", "model.dim", "n", "seed", "train_error", "test_error"])


def test_n_star_needs_the_error_to_stay_low_and_skips_unfit_points():
    rows = []
    for seed in (0, 1):
        for n, err in [(4, 0.9), (8, 0.05), (16, 0.3), (32, 0.05), (64, 0.01)]:
            rows.append(("plain", 64, n, seed, 0.0, err))
    rows.append(("plain", 64, 128, 0, 0.5, 0.9))                      # did not fit its training set
    rows.append(("plain", 64, 128, 1, 0.0, 0.0))
    table = NT.fit_table(_frame(rows))
    assert table.set_index("n").fits.to_dict() == {4: True, 8: True, 16: True, 32: True, 64: True, 128: False}
    star = NT.n_star(_frame(rows)).iloc[0]
    assert star.n_star == 32                                          # 8 is below 0.1 but 16 goes back to 0.3
    assert star.unfit == 1 and star.n_max == 128


def test_n_star_is_nan_when_never_below():
    rows = [("plain", 1024, n, 0, 0.0, 0.95) for n in (4, 8, 16)]
    assert math.isnan(NT.n_star(_frame(rows)).iloc[0].n_star)


def test_loglog_slope_recovers_a_power_law_and_its_interval():
    d = [32, 64, 128, 256]
    exact = NT.loglog_slope(d, [2 * x for x in d])
    assert exact["slope"] == pytest.approx(1.0) and exact["low"] == pytest.approx(1.0)
    noisy = NT.loglog_slope(d, [64, 256, 256, 2048])
    assert noisy["low"] < noisy["slope"] < noisy["high"] and noisy["points"] == 4
    assert math.isnan(NT.loglog_slope([32, 64], [8, 16])["low"])      # two points: no interval
    assert NT.loglog_slope([32, 64, 128], [8, math.nan, 32])["points"] == 2


@pytest.mark.parametrize("low, high, vo, verdict", [
    (0.5, 1.5, [8, 16, 32], "reproduced"),
    (0.5, 0.9, [8, 16, 32], "partial"),                               # grows, but slower than linear
    (-0.2, 1.5, [8, 16, 32], "partial"),
    (0.5, 1.5, [8, 64, 32], "partial"),
    (0.5, 1.5, [8, math.nan, 32], "partial"),
    (-0.2, 0.5, [64, 64, 64], "not reproduced"),
])
def test_copy_verdict_rule(low, high, vo, verdict):
    got, checks = NT.copy_verdict({"low": low, "high": high}, pd.Series(vo))
    assert got == verdict and len(checks) == 3


def test_checks_said_reads_like_the_status_page():
    assert NT.checks_said([True, False, True]) == "held, failed, held"


def test_choose_vo_scale_takes_the_smallest_that_works_at_every_d():
    table = pd.DataFrame([(s, d, n) for s, ns in [(1, [64, 128]), (10, [8, 64]), (30, [8, 16]), (100, [4, 8])]
                          for d, n in zip((64, 256), ns)], columns=["scale", "d", "n_star"])
    assert NT.choose_vo_scale(table) == 30
    never = table.assign(n_star=[math.nan, math.nan, 64, 256, 128, 128, 512, math.nan])
    assert NT.choose_vo_scale(never) == 30                            # smallest worst case (128)


def test_rule_check_replays_a_rule_on_full_runs():
    curve = [{"epoch": e, "train_loss": tl, "train_error": te, "val_loss": 1.0, "val_error": ve, "test_error": t}
             for e, tl, te, ve, t in [(20, 2.0, 0.9, 0.9, 0.9), (40, 0.005, 0.0, 0.3, 0.31),
                                      (60, 0.004, 0.0, 0.3, 0.30), (80, 0.003, 0.0, 0.3, 0.25)]]
    run = S.runs.RunResult("k", S.runs.run_config("copy", TINY, data=8).to_dict(), {}, curve, 1.0)
    rule = TrainConfig(stop_train_loss=0.01, stop_window=20, stop_metric="val_error")
    check = NT.rule_check([run], rule)
    assert check.stop_epoch.tolist() == [60] and check.change.iloc[0] == pytest.approx(0.05)
    assert not NT.rule_holds(check) and NT.rule_holds(check, tolerance=0.06)


def test_copy_experiments_have_their_shapes():
    for name in ("copy", "copy_protocol", "copy_vo_scale"):
        configs = experiment(name)
        assert configs and all(c.task == {"name": "copy"} for c in configs)
        assert all(c.model.heads == 4 and c.model.dim_head == 64 and c.model.mlp_dim == 256 for c in configs)
        smoke = experiment(name, profile="smoke")
        assert smoke and all(c.train.epochs <= 10 for c in smoke)
    full = [c for c in experiment("copy") if c.model.dim <= 64]
    assert full and all(c.train.stop_train_loss is None for c in full)


def _binding(plain, both):
    rows = [("transformer", n, e, o) for n, e, o in plain]
    rows += [("transformer + KQ & VO (identity ×10)", n, e, o) for n, e, o in both]
    t = pd.DataFrame(rows, columns=["model", "n", "test_error", "other_value"])
    return t.assign(train_error=0.0, seeds=2, any_other_token=t.test_error - t.other_value)


@pytest.mark.parametrize("plain, both, checks", [
    ([(16, 0.95, 0.1), (256, 0.5, 0.45), (4096, 0.3, 0.2)], [(16, 0.5, 0.4), (1024, 0.01, 0.0)], [True, True, True]),
    ([(16, 0.95, 0.1), (256, 0.5, 0.2), (4096, 0.05, 0.0)], [(16, 0.5, 0.4), (1024, 0.01, 0.0)], [False, False, True]),
    ([(16, 0.95, 0.1), (256, 0.5, 0.45), (4096, 0.3, 0.2)], [(16, 0.5, 0.4), (32768, 0.01, 0.0)], [True, True, False]),
])
def test_binding_verdict_rule(plain, both, checks):
    verdict, got, measured = NT.binding_verdict(_binding(plain, both))
    assert got == checks
    assert verdict == {3: "reproduced", 0: "not reproduced"}.get(sum(checks), "partial")
    assert measured.startswith("d = 64, 2 seeds per point: plain test error 0.95 (n = 16)")
    assert measured.endswith(": " + NT.checks_said(checks) + ".")
    last_plain, last_both = plain[-1], both[-1]
    assert NT.binding_ours(_binding(plain, both)) == (
        f"plain {last_plain[1]:.2f} at n = {last_plain[0]} ({last_plain[2] / last_plain[1]:.0%} the other value), "
        f"+ KQ & VO {last_both[1]:.2f} at n = {last_both[0]}")


def test_binding_table_splits_the_error():
    frame = pd.DataFrame({"model": ["transformer"] * 2, "n": [64, 64], "seed": [0, 1], "train_error": [0.0, 0.0],
                          "test_error": [0.5, 0.3], "test_error_other_label": [0.4, 0.2]})
    row = NT.binding_table(frame).iloc[0]
    assert row.test_error == pytest.approx(0.4) and row.other_value == pytest.approx(0.3)
    assert row.any_other_token == pytest.approx(0.1) and row.seeds == 2
    with pytest.raises(ValueError, match="test_error_other_label"):
        NT.binding_table(frame.drop(columns="test_error_other_label"))


def test_precision_is_validated():
    with pytest.raises(ValueError, match="unknown precision 'fp8'; allowed: 32, bf16"):
        TrainConfig(precision="fp8")
    assert "precision" not in TrainConfig().to_dict()


def test_bad_sizes_are_refused_clearly_and_any_d_works():
    with pytest.raises(ValueError, match="model dim must be a positive integer; got 0"):
        S.ModelConfig(dim=0)
    with pytest.raises(ValueError, match="n must be a positive integer.*got 0"):
        S.DataConfig(n=0)
    with pytest.raises(ValueError, match="bad parameters {'d': 64} for task 'copy'"):
        S.get_task("copy", d=64)
    # the heads' inner width (heads × dim_head) is independent of d, so d need not divide by heads
    r = S.fit("copy", S.ModelConfig(dim=10, heads=4, dim_head=8, mlp_dim=16, depth=1), TrainConfig(epochs=2), data=8)
    assert 0 <= r.metrics["test_error"] <= 1


def test_readout_scale_multiplies_the_logits_and_keeps_old_hashes():
    from dataclasses import replace
    task = S.get_task("copy")
    data = S.make_data(task, SMALL_DATA, seed=0)
    plain = S.model_for(TINY, data, seed=0)
    scaled = S.model_for(replace(TINY, readout_scale=0.25), data, seed=0)
    x = data.x["test"]
    assert torch.allclose(scaled(x), 0.25 * plain(x), atol=1e-6)
    assert "readout_scale" not in TINY.to_dict()                      # stored runs keep their keys
    assert S.store.model_label(replace(TINY, readout_scale=1 / 32).to_dict()) == "transformer (logits ×0.0312)"
    with pytest.raises(ValueError, match="readout_scale must be a finite positive number"):
        replace(TINY, readout_scale=0.0)


def test_complete_curves_keep_only_curves_with_every_n_of_their_grid():
    from symlib import experiments as E
    configs = [c for c in E.copy("paper") if c.model.dim == 64 and not c.model.vo_identity and c.seed in (0, 1)]
    grid_n = sorted({c.data.n for c in configs})
    rows = [{"model": "transformer", "model.dim": 64, "seed": 0, "n": n} for n in grid_n]            # complete
    rows += [{"model": "transformer", "model.dim": 64, "seed": 1, "n": n} for n in grid_n[2:]]       # small n missing
    rows += [{"model": "transformer", "model.dim": 32, "seed": 0, "n": 4}]                           # not in these configs
    frame = pd.DataFrame(rows)
    kept = NT.complete_curves(frame, configs)
    assert set(zip(kept["model.dim"], kept.seed)) == {(64, 0)} and len(kept) == len(grid_n)
    assert NT.complete_curves(frame.iloc[0:0], configs).empty


def test_binding_progress_reports_the_largest_n_of_each_model():
    table = _binding([(16, 0.95, 0.1), (4096, 0.5, 0.45)], [(256, 0.2, 0.1)])
    text = NT.binding_progress(table)
    assert text == ("transformer: test error 0.50 at n = 4096, 90% of it the other value (2 seeds); "
                    "transformer + KQ & VO (identity ×10): test error 0.20 at n = 256, 50% of it the other value (2 seeds).")
    with pytest.raises(ValueError, match="binding_table is empty"):
        NT.binding_progress(table.iloc[0:0])


def test_n_star_words_lists_reached_and_unreached_values_in_order_of_d():
    stars = pd.DataFrame({"model": ["m"] * 3, "d": [128, 32, 64], "n_star": [float("nan"), 256.0, 512.0],
                          "n_max": [1024, 1024, 1024], "unfit": [0, 0, 0]})
    assert NT.n_star_words(stars) == "256, 512 and > 1024 at $d$ = 32, 64 and 128"
    assert NT.n_star_words(stars.iloc[[1]]) == "256 at $d$ = 32"
    with pytest.raises(ValueError, match="exactly one model"):
        NT.n_star_words(stars.assign(model=["a", "b", "a"]))


def test_copies_at_words_lists_each_seeds_copying_n():
    runs = pd.DataFrame({"model": ["m"] * 6, "d": [2048] * 4 + [4096] * 2, "seed": [0, 0, 1, 1, 0, 0],
                         "n": [64, 32, 4, 8, 4, 8], "test_error": [0.02, 0.5, 0.0, 0.099, 1.0, 0.1]})
    assert NT.copies_at_words(runs) == ("$d = 2048$: seed 0 at $n$ = 64; seed 1 at $n$ = 4 and 8; "
                                        "$d = 4096$: seed 0 at no $n$")
    with pytest.raises(ValueError, match="exactly one model"):
        NT.copies_at_words(runs.assign(model=["a", "b"] * 3))


def test_paired_points_joins_a_control_to_the_run_it_controls():
    ref = pd.DataFrame({"model.dim": [256, 256, 1024], "n": [256, 64, 256], "seed": [0, 0, 0],
                        "test_error": [0.97, 1.0, 1.0]})
    ctl = pd.DataFrame({"model.dim": [256, 1024, 512], "n": [256, 256, 256], "seed": [0, 0, 0],
                        "test_error": [0.01, 0.95, 0.5]})
    pairs = NT.paired_points(ref, ctl, "_control")
    assert pairs[["d", "n"]].values.tolist() == [[256, 256], [1024, 256]]   # points both hold, by d then n
    assert pairs.test_error.tolist() == [0.97, 1.0] and pairs.test_error_control.tolist() == [0.01, 0.95]
    with pytest.raises(ValueError, match="suffix"):
        NT.paired_points(ref, ctl, "")


def test_cpu_rate_is_the_median_cost_per_sample_epoch_of_cpu_runs_at_large_n():
    frame = pd.DataFrame({"d": [64, 64, 64, 64, 256], "n": [256, 512, 1024, 16, 512],
                          "wall_time_s": [256.0, 1024.0, 1024.0, 99.0, 1.0], "threads": [1, 1, 2, 1, 1],
                          "epochs_run": [1000] * 5, "device": ["cpu", "cpu", "cpu", "cpu", "cuda:0"]})
    rate = NT.cpu_rate(frame)
    # d = 64: 1, 2 and 2 ms per sample-epoch (the n = 16 run is below RATE_MIN_N); d = 256 ran on a GPU
    assert rate.to_dict() == {64: pytest.approx(2e-3)}


def test_point_rate_is_the_median_cost_per_sample_epoch_of_cpu_runs_at_each_point():
    frame = pd.DataFrame({"d": [64, 64, 64, 256], "n": [512, 512, 16, 512],
                          "wall_time_s": [512.0, 2048.0, 32.0, 1.0], "threads": [1, 1, 1, 1],
                          "epochs_run": [1000] * 4, "device": ["cpu", "cpu", "cpu", "cuda:0"]})
    # (64, 512): 1 and 4 ms per sample-epoch, median 2.5 ms; (64, 16): 2 ms; d = 256 ran on a GPU
    assert NT.point_rate(frame).to_dict() == {(64, 16): pytest.approx(2e-3), (64, 512): pytest.approx(2.5e-3)}


def test_price_check_prices_the_large_runs_from_the_small_ones_and_compares_with_their_record():
    frame = pd.DataFrame({"d": [64, 64, 64, 64, 256, 256], "n": [256, 1024, 2048, 4096, 512, 2048],
                          "wall_time_s": [256.0, 2048.0, 8192.0, 4096.0, 1.0, 1.0], "threads": [1, 1, 1, 2, 1, 1],
                          "epochs_run": [1000] * 6, "device": ["cpu"] * 5 + ["cuda:0"]})
    check = NT.price_check(frame).set_index("d")
    # d = 64: rates 1 and 2 ms at n <= 1024, median 1.5 ms; runs above: 6144 sample-epochs × 1000 × 1.5 ms
    # = 9216 s priced against 8192 + 2 × 4096 = 16384 s recorded; d = 256's large run trained on a GPU
    assert check.index.tolist() == [64] and check.loc[64, "runs"] == 2 and check.loc[64, "largest_n"] == 4096
    assert check.loc[64, "priced_cpu_hours"] == pytest.approx(9216 / 3600)
    assert check.loc[64, "recorded_cpu_hours"] == pytest.approx(16384 / 3600)
    assert check.loc[64, "ratio"] == pytest.approx(16384 / 9216)
    assert NT.price_check(frame[frame.n <= 1024]).empty


def test_missing_cpu_hours_prices_each_d_and_interpolates_between_measured_ones():
    rate = pd.Series({32: 1e-3, 128: 4e-3})
    configs = [c for c in experiment("copy", "paper") if c.model.dim in (32, 64) and not c.model.vo_identity
               and c.seed == 0]
    table = NT.missing_cpu_hours(configs, rate).set_index("d")
    for d, r, how in ((32, 1e-3, "measured"), (64, 2e-3, "interpolated")):
        mine = [c for c in configs if c.model.dim == d]
        assert table.loc[d, "runs"] == len(mine) and table.loc[d, "how"] == how
        assert table.loc[d, "cpu_hours"] == pytest.approx(sum(c.data.n * c.train.epochs for c in mine) * r / 3600)
    # a run at a point another seed ran on this CPU is priced at that point's cost, the rest at d's rate
    n_big = max(c.data.n for c in configs if c.model.dim == 32)
    at_point = pd.Series({(32, n_big): 5e-3, (256, n_big): 1.0})
    table = NT.missing_cpu_hours(configs, rate, at_point).set_index("d")
    mine = [c for c in configs if c.model.dim == 32]
    assert table.loc[32, "priced_at_point"] == 1 and table.loc[64, "priced_at_point"] == 0
    assert table.loc[32, "cpu_hours"] == pytest.approx(
        sum(c.data.n * c.train.epochs * (5e-3 if c.data.n == n_big else 1e-3) for c in mine) / 3600)
    wide = [c for c in experiment("copy", "paper") if c.model.dim == 1024][:1]
    with pytest.raises(ValueError, match="no CPU rate measured at or around d = 1024; measured at d = 32, 128"):
        NT.missing_cpu_hours(wide, rate)
    with pytest.raises(ValueError, match="cpu_rate is empty"):
        NT.missing_cpu_hours(configs, pd.Series(dtype=float))

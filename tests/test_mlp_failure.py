"""The MLP-failure theorem's checks (symlib.mlp_failure): frozen rows, exact equivariance, the paired
two-sample test, the test-loss decomposition."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

import symlib as S  # noqa: E402
from symlib import mlp_failure as E  # noqa: E402
from symlib.store import RunStore  # noqa: E402

SMALL = S.DataConfig(n=32, n_test=64, test_alphabet=64, n_val=16, val_alphabet=16)


@pytest.fixture(scope="module")
def data():
    return S.make_data(S.get_task("same_different"), SMALL, seed=0)


def test_unseen_rows_get_zero_gradient_and_never_move(data):
    cfg = S.ModelConfig(kind="mlp", hidden=16)
    init = S.model_for(cfg, data, seed=1)
    net = S.model_for(cfg, data, seed=1)
    grad, seen = E.first_layer_gradient(net, data), E.seen_mask(data)
    assert grad[~seen].abs().max() == 0 and grad[seen].abs().max() > 0
    E.train_full_batch(net, data, steps=30, optimizer="adam", lr=1e-2)
    change = E.row_change(init, net, data)
    assert change["unseen_max_change"] == 0.0 and change["seen_max_change"] > 1e-3
    assert change["unseen_rows"] + change["seen_rows"] == 2 * data.vocab_size


def test_training_is_equivariant_even_with_weight_decay(data):
    lo = data.offsets["test"]
    perms = E.swap_unseen(data, [(1, lo, lo + 1), (0, lo + 2, lo + 3)])
    gap = E.equivariance_gap(S.ModelConfig(kind="mlp", hidden=16), data, perms, steps=15, lr=1e-2, weight_decay=0.1)
    assert gap["unseen_max_change"] > 0          # weight decay moves unseen rows: the lemma fails ...
    assert gap["max_gap"] <= 1e-6 * max(gap["output_scale"], 1)  # ... equivariance does not
    xxt = E.equivariance_gap(S.ModelConfig(kind="mlp_xxt", hidden=16), data, perms, steps=15, lr=1e-2)
    assert xxt["max_gap"] > 1e-3                 # X Xᵀ features break the per-position symmetry


def test_permute_unseen_rejects_seen_tokens(data):
    seen_token = int(data.x["train"][0, 0])
    perms = E.swap_unseen(data, [(0, seen_token, data.offsets["test"])])
    net = S.model_for(S.ModelConfig(kind="mlp", hidden=8), data, seed=0)
    with pytest.raises(ValueError, match="moves a token seen at position 0"):
        E.permute_unseen_(net, data, perms)
    with pytest.raises(ValueError, match="one permutation per position"):
        E.permute_unseen_(net, data, perms[:1])


def test_apply_perms_maps_same_to_different(data):
    lo = data.offsets["test"]
    perms = E.swap_unseen(data, [(1, lo, lo + 1)])
    assert E.apply_perms(torch.tensor([[lo, lo]]), perms).tolist() == [[lo, lo + 1]]


def test_ks_statistic_matches_scipy_and_paired_test_has_power():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=80), rng.normal(size=80)
    assert E.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert E.paired_ks_test(a, b, n_resamples=999)["p_value"] > 0.05
    assert E.paired_ks_test(a, b + 1.0, n_resamples=999)["p_value"] < 0.01
    with pytest.raises(ValueError, match="equal length"):
        E.paired_ks_test(a, b[:10])


def test_two_sample_experiment_rows_and_loss_decomposition():
    out = E.two_sample_experiment(S.ModelConfig(kind="mlp", hidden=16), [0, 1], n=16, steps=100, lr=1e-2,
                                  data={"n_test": 32, "test_alphabet": 32, "n_val": 8, "val_alphabet": 8})
    for row in out["rows"]:
        assert row["train_loss"] < 1e-2
        assert row["test_mse"] == pytest.approx(1 + row["mean_f2"] - 2 * row["mean_yf"], abs=1e-5)


def test_rows_need_an_mlp(data):
    net = S.model_for(S.ModelConfig(kind="lstm", dim=8, hidden=8), data, seed=0)
    with pytest.raises(ValueError, match="expected a symlib MLP"):
        E.first_layer_rows(net, 2)


def test_scale_unseen_rows_touches_only_unseen_rows(data):
    net = S.model_for(S.ModelConfig(kind="mlp_xxt", hidden=8), data, seed=0)
    before, seen = E.first_layer_rows(net, 2).detach().clone(), E.seen_mask(data)
    E.scale_unseen_rows_(net, data, 0.0)
    after = E.first_layer_rows(net, 2)
    assert torch.equal(after[seen], before[seen]) and after[~seen].abs().max() == 0
    assert before[~seen].abs().max() > 0
    E.unseen_rows_to_seen_mean_(net, data)
    after = E.first_layer_rows(net, 2)
    for p in range(2):
        assert torch.allclose(after[p, ~seen[p]], before[p, seen[p]].mean(0).expand_as(after[p, ~seen[p]]))
    assert torch.equal(after[seen], before[seen])


def test_unseen_rows_effect_on_a_trained_mlp_xxt(tmp_path, data):
    """x1 is the net as trained (its recorded test loss); removing the frozen random rows changes
    the test loss, and for MLP + XXᵀ (whose XXᵀ features are the same on train and test) lowers it."""
    cfg = S.run_config("same_different", S.ModelConfig(kind="mlp_xxt", hidden=16),
                       S.TrainConfig(epochs=60, eval_every=20, lr=1e-2), SMALL, seed=0)
    store = RunStore(tmp_path)
    rows = E.across_n([cfg], tmp_path / "rows.json", store=store, analysis=E.unseen_rows_effect)
    (row,) = rows
    assert cfg in store and row["train_loss"] < 1e-2
    assert row["test_mse_x1"] == pytest.approx(row["test_loss"], rel=1e-5)
    assert row["test_mse_x0"] < row["test_mse_x1"] < row["test_mse_x2"]
    assert row["test_mse_seen_mean"] != row["test_mse_x1"]
    stored = store.get(cfg)
    again = E.across_n([cfg], tmp_path / "rows.json", store=store, analysis=E.unseen_rows_effect)
    assert again == rows  # read back, not retrained
    fresh = E.across_n([cfg], None, store=store, analysis=E.unseen_rows_effect)  # retrained: no row file
    assert fresh[0]["test_mse_x0"] == row["test_mse_x0"]  # deterministic
    assert store.get(cfg).wall_time_s == stored.wall_time_s  # the stored record is left as it was


def test_rotation_form_holds_for_sgd_and_momentum_not_for_adam_with_weight_decay():
    task = S.get_task("same_different")
    data = S.make_data(task, S.DataConfig(n=16, n_test=32, test_alphabet=32, n_val=8, val_alphabet=8), seed=0)
    seen = E.seen_mask(data)
    rots = {p: E.random_rotation(int((~seen[p]).sum()), seed=p) for p in range(2)}
    cfg = S.ModelConfig(kind="mlp", hidden=16)
    for optimizer, wd in [("sgd", 0.1), ("momentum", 0.1), ("adam", 0.0)]:
        r = E.rotation_gap(cfg, data, rots, steps=30, optimizer=optimizer, lr=1e-2, weight_decay=wd)
        assert r["max_gap"] <= 1e-5 * max(r["output_scale"], 1e-3), optimizer
    r = E.rotation_gap(cfg, data, rots, steps=30, optimizer="adam", lr=1e-2, weight_decay=0.1)
    assert r["max_gap"] > 1e-3 * r["output_scale"]
    q = E.random_rotation(5, seed=1)
    assert torch.allclose(q @ q.T, torch.eye(5), atol=1e-5)


# ----------------------------------------------------------------------------- the chapter's figures


def test_two_sample_figure_one_ecdf_panel_per_model_and_a_shared_legend():
    rows = {"MLP": pd.DataFrame({"same": [0.1, -0.2, 0.3], "diff": [0.0, 0.2, -0.1]}),
            "MLP + XXᵀ": pd.DataFrame({"same": [0.8, 0.9], "diff": [-0.7, -0.6]})}
    fig = E.two_sample_figure(rows)
    assert [a.get_title() for a in fig.axes] == ["MLP", "MLP + XXᵀ"]
    assert all(len(a.get_lines()) == 2 for a in fig.axes)                  # one ECDF per string
    assert len(fig.legends) == 1 and all(a.get_legend() is None for a in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["αα (same)", "γδ (different)"]
    plt.close(fig)


def test_across_n_figure_draws_loss_and_second_moment_with_the_trivial_level():
    across = pd.DataFrame([{"model": m, "n": n, "seed": s, "test_loss": 1.0 if m == "MLP" else 0.1,
                            "mean_f2": 0.05} for m in ("MLP", "MLP + XXᵀ") for n in (4, 16) for s in (0, 1)])
    fig = E.across_n_figure(across)
    ax = fig.axes[0]
    trivial = [line for line in ax.get_lines() if list(line.get_ydata()) == [1.0, 1.0] and line.get_linestyle() == ":"]
    assert len(trivial) == 1
    assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "16"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"MLP", "MLP + XXᵀ", "test MSE", "E[F²] (test)"} <= set(labels)
    plt.close(fig)

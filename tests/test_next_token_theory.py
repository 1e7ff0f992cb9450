"""The next-token theory's probes (symlib.next_token_theory): the exact one-step law of unseen rows, update
spaces and projections, margin dilution in the linear copier, the copy signal and the unseen rows
of a trained model (Adam), copying by construction and the gradient of b_h at initialisation."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import symlib as S  # noqa: E402
from symlib import next_token_theory as P  # noqa: E402

COPY = S.DataConfig(n=16, n_test=40, test_alphabet=40, n_val=8, val_alphabet=8)
TINY = S.ModelConfig(dim=32, depth=1, heads=1, dim_head=16, mlp_dim=32)


@pytest.fixture()
def setup():
    task = S.get_task("copy")
    data = S.make_data(task, COPY, seed=0)
    return data, S.model_for(TINY, data, seed=0)


def test_final_hidden_is_what_the_tied_unembedding_reads(setup):
    data, model = setup
    with torch.no_grad():
        h = P.final_hidden(model, data.x["test"])
        assert torch.allclose(h @ model.tok_emb.weight.T, model(data.x["test"]), atol=1e-4)


@pytest.mark.parametrize("init_scale", [1.0, 0.1])
def test_unseen_rows_move_along_training_hidden_states(init_scale):
    task = S.get_task("copy")
    data = S.make_data(task, COPY, seed=0)
    from dataclasses import replace
    model = S.model_for(replace(TINY, init_scale=init_scale), data, seed=0)
    out = P.unseen_row_step(model, data, lr=0.1)
    assert out["rel_change"] > 0 and out["max_rel_error"] < 1e-9


def test_update_space_recovers_a_known_update(setup):
    data, model = setup
    trained = S.build_model(TINY, data.vocab_size, 3 + 1, "next_token", seed=0)
    trained.load_state_dict(model.state_dict())
    v = torch.randn(32)
    with torch.no_grad():
        trained.blocks[0].attn.w_v.weight += torch.outer(torch.randn(16), v)  # rank one, row space v
    basis = P.update_space(model, trained, "reads")
    assert basis.shape == (32, 1)
    w = torch.randn(32)
    w -= (w @ v) / (v @ v) * v
    frac = P.projection_fraction(torch.stack([v, w]), basis)
    assert frac[0] == pytest.approx(1.0, abs=1e-5) and frac[1] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="did not change"):
        P.update_space(model, trained, "embedding")
    with pytest.raises(ValueError, match="part must be"):
        P.update_space(model, trained, "heads")


def test_isotropic_vectors_project_m_over_d():
    d, m = 200, 20
    basis, _ = torch.linalg.qr(torch.randn(d, m, generator=torch.Generator().manual_seed(0)))
    e = torch.randn(4000, d, generator=torch.Generator().manual_seed(1))
    assert float(P.projection_fraction(e, basis).mean()) == pytest.approx(m / d, rel=0.05)


def test_vo_path_copies_unseen_tokens_and_plain_init_does_not():
    assert P.vo_copy_error(128, b=10.0, n_test=200, test_alphabet=200) < 0.1
    assert P.vo_copy_error(128, b=0.0, n_test=200, test_alphabet=200) > 0.9


def test_margin_dilution_error_grows_with_d_at_fixed_n():
    runs = [P.margin_dilution(d, 32, unseen=64, steps=60) for d in (16, 32, 128)]
    assert all(r["train_error"] == 0 for r in runs)                       # every d fits its training tokens
    errors = [r["test_error"] for r in runs]
    assert errors == sorted(errors) and errors[0] < 0.4 and errors[-1] > 0.9
    assert runs[-1]["test_gain"] < 0.3 * runs[-1]["train_gain"]


def test_margin_dilution_gain_ratio_is_m_over_d():
    out = P.margin_dilution(128, 8, unseen=64, steps=60)
    assert out["row_leak"] < 1e-5                                         # gradient descent keeps W = W P_S
    assert out["m_over_d"] == 8 / 128 and out["hebbian"] == pytest.approx(8 / 137)
    assert out["gain_ratio"] == pytest.approx(out["m_over_d"], rel=0.3)
    assert out["gain_ratio"] == pytest.approx(out["hebbian"], rel=0.2)
    assert out["w_norm"] < 20                                             # sqrt(d) ||W||_op: ||W|| ~ 1/sqrt(d)


def test_margin_dilution_adam_leaves_the_training_span_and_bad_input():
    assert P.margin_dilution(64, 8, unseen=32, steps=20, lr=1e-3, optimizer="adam")["row_leak"] > 0.1
    with pytest.raises(ValueError, match="optimizer"):
        P.margin_dilution(16, 4, optimizer="sgd")
    with pytest.raises(ValueError, match="d must be a positive integer"):
        P.margin_dilution(0, 4)


def test_dilution_grid_is_cached_and_checks_its_config(tmp_path):
    a = P.dilution_grid([16], [4], [0], unseen=16, steps=5, root=tmp_path)
    assert (tmp_path / "next_token_theory" / "dilution.json").exists() and len(a["rows"]) == 1
    assert P.dilution_grid([16], [4], [0], unseen=16, steps=5, root=tmp_path) == a
    with pytest.raises(ValueError, match="recompute"):
        P.dilution_grid([16], [4], [0], unseen=16, steps=6, root=tmp_path)
    assert P.dilution_n_star(a["rows"]) == {16: None}


def test_dilution_n_star_needs_the_error_to_stay_low():
    rows = [{"d": 8, "n": n, "test_error": e} for n, e in [(4, 0.5), (8, 0.05), (16, 0.3), (32, 0.05), (64, 0.0)]]
    rows += [{"d": 16, "n": n, "test_error": e} for n, e in [(4, 0.9), (8, 0.15), (16, 0.08)]]
    assert P.dilution_n_star(rows) == {8: 32, 16: 16}


@pytest.fixture(scope="module")
def trained_copy():
    """A tiny copy model trained with Adam (symlib.fit) and its initialisation."""
    task = S.get_task("copy")
    config = S.run_config("copy", S.ModelConfig(dim=16, depth=1, heads=1, dim_head=8, mlp_dim=16),
                          S.TrainConfig(epochs=150, eval_every=150), S.DataConfig(
                              n=32, n_test=40, test_alphabet=40, n_val=8, val_alphabet=8), seed=0)
    result, trained = S.fit(config, return_model=True)
    data = S.make_data(task, config.data, seed=0)
    init = S.model_for(config.model, data, seed=0)
    return result, data, init, trained


def test_unseen_ids_are_the_tokens_training_never_shows(trained_copy):
    _, data, _, _ = trained_copy
    u = set(P.unseen_ids(data).tolist())
    seen = set(data.x["train"].flatten().tolist()) | set(data.y["train"].tolist())
    assert u == set(range(data.vocab_size)) - seen
    assert set(range(data.offsets["test"], data.vocab_size)) <= u


def test_target_margins_of_a_trained_model(trained_copy):
    result, data, init, trained = trained_copy
    out = P.target_margins(init, trained, data)
    assert out["test_error"] == pytest.approx(result.metrics["test_error"], abs=1e-6)
    assert out["train_gain"] > 0 and out["train_margin"] > out["test_margin"]
    assert out["gain_ratio"] == pytest.approx(out["test_gain"] / out["train_gain"])
    same = P.target_margins(init, init, data)
    assert same["train_gain"] == 0 and same["test_gain"] == 0 and math.isnan(same["gain_ratio"])


def test_adam_moves_unseen_rows_in_a_common_direction(trained_copy):
    result, data, init, trained = trained_copy
    out = P.unseen_rows(init, trained, data)
    assert out["unseen_rows"] == len(P.unseen_ids(data))
    assert 0.01 < out["row_move"] < 1                  # Adam moves them (SGD would by ~p_u, i.e. barely)
    assert out["move_cosine"] > 0.3                    # ... and all in much the same direction
    assert out["move_vs_hidden"] > 0.5                 # ... against the mean training hidden state
    assert out["test_error"] == pytest.approx(result.metrics["test_error"], abs=1e-6)
    assert 0 <= out["reset_test_error"] <= 1
    again = P.unseen_rows(init, trained, data)          # the reset acts on a copy
    assert again == out or all(again[k] == pytest.approx(v, nan_ok=True) for k, v in out.items())
    assert P.unseen_rows(init, init, data)["row_move"] == 0


def test_vo_gradient_at_init_says_increase_b():
    small, large = P.vo_gradient_at_init(16, n=16), P.vo_gradient_at_init(128, n=16)
    assert small["descent"] > 0.01 and small["positive_share"] > 0.5    # signal ~ d, per-string noise ~ sqrt(d)
    assert large["descent"] > 0.05 and large["positive_share"] == 1.0


def test_probes_need_a_next_token_model():
    mlp = S.build_model(S.ModelConfig(kind="mlp", hidden=8), 20, 2, "regression", seed=0)
    with pytest.raises(ValueError, match="NextTokenTransformer"):
        P.final_hidden(mlp, torch.zeros(1, 2, dtype=torch.long))


# ----------------------------------------------------------------------------- the chapter's figures


def _probe():
    """Trained-model rows: unseen projection = m/d, training projection above it; d = 16 fits."""
    rows = []
    for d in (16, 64):
        for n in (8, 32):
            for seed in (0, 1):
                m = min(n, d) / d
                rows.append({"d": d, "n": n, "seed": seed, "reads_m_over_d": m, "reads_unseen": m,
                             "reads_train": min(1.0, 2 * m), "fits": d == 16, "predicted": n / (n + d + 1),
                             "gain_ratio": 0.5 * n / (n + d + 1), "reset_gain_ratio": n / (n + d + 1)})
    return pd.DataFrame(rows)


def _diagonals(ax):
    return [line for line in ax.get_lines() if list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [0, 1]]


def test_dilution_figure_two_panels_the_prediction_and_one_shared_legend():
    dil = pd.DataFrame([{"d": d, "n": n, "seed": 0, "test_error": 1.0 if n < 4 * d else 0.0, "train_error": 0.0,
                         "hebbian": n / (n + d + 1), "gain_ratio": n / (n + d + 1)} for d in (16, 64) for n in (4, 64, 256)])
    adam = dil[dil.n <= 64].assign(gain_ratio=lambda f: f.gain_ratio / 2)
    fig = P.dilution_figure(dil, adam)
    left, right = fig.axes
    assert left.get_title() == "linear copier, gradient descent" and left.get_xscale() == "log"
    assert len(_diagonals(right)) == 1
    assert all(a.get_legend() is None for a in fig.axes) and len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count("d = 16") == 1 and {"test (unseen)", "train", "gradient descent", "Adam (control)"} <= set(labels)
    plt.close(fig)


def test_projection_and_copy_signal_figures_draw_the_prediction():
    probe = _probe()
    fig = P.projection_figure(probe)
    ax = fig.axes[0]
    assert len(_diagonals(ax)) == 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"n = 8", "n = 32", "fits its training set", "does not fit"} <= set(labels)
    plt.close(fig)
    fig = P.copy_signal_figure(probe[probe.fits])
    ax = fig.axes[0]
    assert len(_diagonals(ax)) == 1
    assert {"d = 16", "as trained (Adam)", "reset to init"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    plt.close(fig)


def test_projection_vs_d_figure_one_panel_per_n_at_most_three_a_row():
    probe = pd.concat([_probe(), _probe().assign(n=lambda f: f.n * 16), _probe().assign(n=lambda f: f.n * 256)])
    fig = P.projection_vs_d_figure(probe)
    titles = [a.get_title() for a in fig.axes]
    assert titles == ["n = 8", "n = 32", "n = 128", "n = 512", "n = 2048", "n = 8192"]
    rows = {round(a.get_position().y0, 3) for a in fig.axes}
    assert len(rows) == 2                                                    # 6 panels: two rows of three
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["16", "64"]      # the bottom row is labelled
    assert len(fig.legends) == 1
    plt.close(fig)

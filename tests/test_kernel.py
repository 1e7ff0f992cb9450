"""The transformer random-features kernel (symlib.kernel): κ three ways, K_trans, the template
matrix N, and kernel regression on fresh symbols."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from symlib import kernel as K  # noqa: E402
from symlib import symbolic as S  # noqa: E402
from symlib.tasks import get_task  # noqa: E402

STRINGS = ["aba", "abb", "cdc", "cdd", "aab", "eee"]


def test_kappa_mc_is_a_symmetric_psd_gram_matrix():
    kap = K.kappa_mc(STRINGS, 1.5, 0.7, samples=2 ** 10)
    assert np.allclose(kap, kap.T, atol=1e-12)
    assert np.linalg.eigvalsh(kap)[0] > -1e-10
    kt = K.relu_nngp(kap)
    assert np.allclose(kt, kt.T, atol=1e-12) and np.linalg.eigvalsh(kt)[0] > -1e-10
    assert np.allclose(np.diag(kt), np.diag(kap) / 2)   # θ = 0: E[relu(g)²] = var / 2


def test_kappa_at_beta_zero_is_exact():
    # softmax(0) is uniform: κ = (1ᵀ G 1 + γ² k) / k², with no Monte Carlo error
    gamma, k = 0.8, 3
    kap = K.kappa_mc(STRINGS, 0.0, gamma, samples=2 ** 4)
    ids, _ = K._as_ids(STRINGS)
    G = K.equality(ids, ids).sum(axis=(2, 3))
    assert np.allclose(kap, (G + gamma ** 2 * k) / k ** 2, atol=1e-12)


def test_monte_carlo_agrees_with_closed_form_series_at_small_beta_gamma():
    beta, gamma = 0.25, 0.3
    for x, y in [("aba", "abb"), ("aba", "cdd"), ("abc", "cab")]:
        c = S.kappa_taylor(x, y, order=6)
        series = sum(float(v) * beta ** n * gamma ** (2 * m) for (n, m), v in c.items())
        mc = K.kappa_mc([x, y], beta, gamma, samples=2 ** 14)[0, 1]
        assert abs(mc - series) < 2e-5, (x, y, mc, series)   # stated tolerance: 2e-5


def test_monte_carlo_agrees_with_quadrature_at_order_one():
    for x, y in [("aba", "abb"), ("ab", "cc")]:
        mc = K.kappa_mc([x, y], 1.0, 1.0, samples=2 ** 14)[0, 1]
        quad = K.kappa_quadrature(x, y, 1.0, 1.0, nodes=10)
        assert abs(mc - quad) < 2e-3


def test_relu_nngp_matches_random_relu_features():
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((3, 5))
    W = rng.standard_normal((200_000, 5))
    h = np.maximum(phi @ W.T, 0)
    assert np.allclose(h @ h.T / len(W), K.relu_nngp(phi @ phi.T), rtol=0.02)  # MC: ~0.5% error


def test_finite_width_kernels_converge():
    errs = {w: np.mean([r["kappa_error"] + r["k_trans_error"] for r in
                        K.width_convergence(["ab", "ba", "cc"], [w], [0, 1, 2], samples=2 ** 12)])
            for w in (4, 64)}
    assert errs[64] < errs[4] / 2


def test_template_matrix_symmetric_psd_and_equal_to_its_monte_carlo_estimate():
    task = get_task("aba_abb")
    N = K.template_matrix(task, 1.0, 1.0, samples=2 ** 10)
    assert N.shape == (2, 2) and np.allclose(N, N.T)
    lam = K.smallest_eigenvalue(N)
    assert lam > 1e-4                                       # nonsingular at (1, 1): ≈ 8.9e-4
    # the same N by Monte Carlo: the K_trans Gram matrix of two disjoint instances of every template
    first, second = K.disjoint_instances(task, 2)
    Nmc = K.k_trans(first + second, 1.0, 1.0, 0.0, 2 ** 12, 0)[:len(first), len(first):]
    assert np.abs(N - (Nmc + Nmc.T) / 2).max() < 1e-3
    # γ = 0: disjoint strings are orthogonal, N = √(d_i d_j)/2π is rank one
    assert abs(K.smallest_eigenvalue(K.template_matrix(task, 1.0, 0.0, samples=2 ** 8))) < 1e-12


def test_kq_identity_improves_conditioning_of_same_different():
    task = get_task("same_different")
    lam = [K.smallest_eigenvalue(K.template_matrix(task, 1.0, 1.0, a=a, samples=2 ** 10)) for a in (0.0, 3.0)]
    assert lam[1] > 2 * lam[0] > 0


def test_pattern_kernel_matches_direct_kernel():
    ids = np.array([[0, 1, 0], [0, 1, 1], [2, 3, 2], [1, 4, 4], [5, 5, 5]])
    pk = K.PatternKernel(1.0, 1.0, samples=2 ** 12)
    M = pk.matrix(ids, ids)
    direct = K.k_trans([tuple(r) for r in ids], 1.0, 1.0, samples=2 ** 12)
    assert np.allclose(M, M.T) and np.abs(M - direct).max() < 5e-3


def test_kernel_regression_fits_and_generalizes_with_kq():
    task = get_task("same_different")
    out = K.kernel_regression(task, 128, K.PatternKernel(1.0, 1.0, a=3.0, samples=2 ** 10), n_test=200)
    assert out["train_loss"] < 1e-3 and out["test_loss"] < 0.5


def test_cached_roundtrip_and_config_check(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return [{"x": 1.0}]

    cfg = {"a": 1}
    assert K.cached("t", cfg, compute, root=tmp_path) == [{"x": 1.0}]
    assert K.cached("t", cfg, compute, root=tmp_path) == [{"x": 1.0}] and len(calls) == 1
    with pytest.raises(ValueError, match="recompute"):
        K.cached("t", {"a": 2}, compute, root=tmp_path)
    assert K.cached("t", {"a": 2}, compute, recompute=True, root=tmp_path) and len(calls) == 2
    assert K.cached("u", cfg, compute, store=False, root=tmp_path) and not (tmp_path / "kernel" / "u.json").exists()


def test_bad_input():
    with pytest.raises(ValueError, match="power of two"):
        K.kappa_mc(["ab"], 1.0, 1.0, samples=1000)
    with pytest.raises(ValueError, match="beta"):
        K.kappa_mc(["ab"], -1.0, 1.0)
    with pytest.raises(ValueError, match="one length"):
        K.kappa_mc(["ab", "abc"], 1.0, 1.0)
    with pytest.raises(ValueError, match="regular tokens"):
        K.template_kappa(get_task("programs"), 1.0, 1.0)
    with pytest.raises(ValueError, match="disjoint_instances"):
        K.template_matrix(get_task("programs"), 1.0, 1.0)
    with pytest.raises(ValueError, match="regression"):
        K.kernel_regression(get_task("copy"), 16, K.PatternKernel(1.0, 1.0))


# ----------------------------------------------------------------------------- theory (issue 22)


def test_beta0_template_matrix_closed_form_and_kq_invisible_for_constant_profiles():
    from symlib.tasks import get_task
    for name in ("same_different", "aba_abb", "aabb_abab"):
        task = get_task(name)
        kxy, ks = K.template_kappa(task, 0.0, 1.0, samples=2 ** 6, nodes=4)
        N0, s0 = K.template_matrix_beta0(task, 1.0)
        assert np.allclose(K.relu_nngp(kxy, ks, ks), N0, atol=1e-12)
        assert np.allclose(s0, [(K.repeat_sum(z) + task.length) / task.length ** 2 for z in task.templates])
    sd, ab = get_task("same_different"), get_task("aba_abb")
    assert K.smallest_eigenvalue(K.template_matrix_beta0(sd, 1.0)[0]) > 1e-3       # distinct R: nonsingular
    assert abs(K.smallest_eigenvalue(K.template_matrix_beta0(ab, 1.0)[0])) < 1e-12  # equal R: singular
    for name in ("same_different", "aabb_abab"):                                    # constant profiles
        t = get_task(name)
        assert np.allclose(K.template_matrix_beta0(t, 1.0, 3.0)[0], K.template_matrix_beta0(t, 1.0)[0], atol=1e-14)
    assert not np.allclose(K.template_matrix_beta0(ab, 1.0, 1.0)[0], K.template_matrix_beta0(ab, 1.0)[0])
    assert np.allclose(K.beta0_weights([0, 1, 0], 1.0, 0.0), 1 / 3)


def test_arccos_series_and_n_dominates_kappa():
    rho = np.linspace(-0.9, 0.9, 7)
    assert np.allclose(K.arccos_j(1.0), 0.5) and np.all(K.arccos_j_prime(rho) > 0)
    kxy = np.array([[1.0, 0.3], [0.3, 0.8]])
    N = K.relu_nngp(kxy)
    assert np.linalg.eigvalsh(N - kxy / 4)[0] >= -1e-12                              # N ⪰ K_κ / 4


def test_det_small_beta_matches_template_kappa():
    from symlib.tasks import get_task
    limit = K.det_small_beta(2 / 81, 4, 5, 3, 1.0)
    kxy, ks = K.template_kappa(get_task("aba_abb"), 1 / 32, 1.0, samples=2 ** 10, nodes=12)
    assert abs(np.linalg.det(K.relu_nngp(kxy, ks, ks)) / (1 / 32) ** 4 / limit - 1) < 0.02


def test_generalization_theorem_exact_formula_and_bound():
    from symlib.tasks import get_task
    row = K.generalization_check(get_task("aba_abb"), 32, K.PatternKernel(1.0, 1.0, samples=2 ** 10), seed=0, n_test=200)
    assert abs(row["test_loss"] - row["formula_loss"]) < 1e-8
    assert row["bound"] >= row["test_loss"] and row["mu"] <= row["mu_structural"] + 1e-9 and row["M_positive_definite"]


def test_local_order_and_sharing_degree():
    assert abs(K.local_order([1, 2, 4], [3, 48, 768]) - 4) < 1e-9
    x = np.array([[0, 1], [1, 2], [3, 4]])
    assert K.sharing_degree(x).tolist() == [1, 1, 0]


# ----------------------------------------------------------------------------- the chapter's figures


def test_width_convergence_figure_draws_both_kernels_and_the_monte_carlo_rate():
    conv = [{"width": w, "seed": s, "kappa_error": 0.4 / w ** 0.5, "k_trans_error": 0.2 / w ** 0.5}
            for w in (4, 16, 64) for s in (0, 1)]
    fig = K.width_convergence_figure(conv)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    rate = lines["∝ width^-1/2 (Monte Carlo rate)"]
    np.testing.assert_allclose(rate.get_ydata(), [0.2, 0.1, 0.05])         # through κ's error at width 4
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["κ̂ (attention)", "K̂_trans (after MLP)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "16", "64"]
    plt.close(fig)


def test_eigen_grid_and_kq_figures_one_panel_per_task_and_a_shared_legend():
    eig = pd.DataFrame([{"task": t, "beta": b, "gamma": g, "lambda_min": 1e-3 * b * g}
                        for t in ("same/different", "ABA vs ABB", "majority-4") for b in (0.5, 1.0) for g in (0.5, 1.0)])
    fig = K.eigen_grid_figure(eig)
    assert [a.get_title() for a in fig.axes] == ["same/different", "ABA vs ABB", "majority-4"]
    assert all(a.get_legend() is None for a in fig.axes) and len(fig.legends) == 1
    assert all(a.get_xscale() == "log" and a.get_yscale() == "log" for a in fig.axes)
    plt.close(fig)
    kq = pd.DataFrame([{"task": t, "a": a, "lambda_min": 1e-3 * (1 + a)} for t in ("same/different", "ABA vs ABB") for a in (0, 1, 3)])
    fig = K.kq_gain_figure(kq)
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].get_lines()) >= 2
    plt.close(fig)


def test_regression_figure_one_panel_per_task_with_dashed_predictions_and_one_legend():
    ns = [4, 16, 64]
    reg = pd.DataFrame([{"task": t, "a": a, "n": n, "seed": s, "test_loss": 1 / (1 + a + n / 16), "train_loss": 0.0}
                        for t in ("same/different", "ABA vs ABB") for a in (0.0, 3.0) for n in ns for s in (0, 1)])
    pred = pd.DataFrame([{"task": t, "a": a, "n": n, "test_loss": 1 / (1 + n / 32)}
                         for t in ("same/different", "ABA vs ABB") for a in (0.0, 3.0) for n in ns])
    assert K.kernel_label(0.0) == "plain" and K.kernel_label(3.0) == "KQ, a = 3"
    fig = K.regression_figure(reg, pred)
    assert [a.get_title() for a in fig.axes] == ["same/different", "ABA vs ABB"]
    assert all(a.get_legend() is None for a in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["plain", "KQ, a = 3"] and labels[-1].startswith("prediction from N alone")
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 2                                                  # one prediction per kernel
    plt.close(fig)


def test_kernel_tables_name_tasks_as_the_book_does():
    """Rows carry tasks.task_label, the name the store's frames and the figures use."""
    rows = K.eigen_grid([{"name": "aba_abb"}, {"name": "majority", "k": 4}], [1.0], [1.0], samples=2 ** 6, nodes=4)
    assert [r["task"] for r in rows] == ["ABA vs ABB", "majority-4"]
    rows = K.regression_curves(["same_different"], [0.0], [8], [0], samples=2 ** 6)
    assert {r["task"] for r in rows} == {"same/different"}

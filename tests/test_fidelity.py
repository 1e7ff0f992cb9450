"""Issue 23, checks 1–4: the authors' constructions as model options (defaults unchanged), the
grids, and every branch of the verdict rules on synthetic frames."""

import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from symlib import ModelConfig, build_model
from symlib.experiments import (AUTHORS_MODELS, OURS_MODELS, IDENTITY_FAMILIES, MIMETIC, MODELS, MULTIPLIERS, N_MULTIPLIERS,
                                N_MULTIPLIERS_VO, N_PAPER, N_WIDTH, SEEDS_PAPER, TRANSFORMER, WIDE_MODELS, experiment,
                                identity_model)
from symlib.fidelity import (BF16_TOL, COMPONENTS, FLOOR_GONE, GAP_FLOOR, PAPER_IDENTITY, bf16_table, bf16_verdict,
                             component_table, components_verdict, estimate_cpu_hours, log_gap, multiplier_table,
                             multipliers_verdict, width_table, width_verdict)
from symlib.models import ReluElman, model_label
from symlib.paper import curve
from symlib.runs import RunResult
from symlib.store import REPO_DATA, RunStore
from symlib.training import fit

X = torch.tensor([[3, 5, 3], [7, 7, 2], [1, 9, 4], [0, 11, 0]])
Y = torch.tensor([1.0, -1.0, 1.0, 1.0])


def outputs_and_one_step(cfg: ModelConfig):
    """The model's outputs on X, one Adam step on the squared loss, and its outputs again (one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = build_model(cfg, 12, 3, "regression", seed=0)
        before = m(X)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        ((before - Y) ** 2).mean().backward()
        opt.step()
        return before.detach(), m(X).detach(), m
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- defaults unchanged

# Outputs for seed 0 computed with the code before the options were added (commit 7255dfb).
BEFORE = {
    "rnn": (ModelConfig(kind="rnn", dim=16, hidden=24),
            [0.265431, -0.349441, 0.352438, -0.079532], [0.318565, -0.370756, 0.384706, -0.031715]),
    "lstm": (ModelConfig(kind="lstm", dim=16, hidden=24),
             [-0.09589, -0.006536, -0.007648, -0.007463], [-0.079555, -0.010641, 0.004266, 0.000211]),
    "mimetic": (ModelConfig(dim=16, heads=2, dim_head=8, mlp_dim=16, mimetic=(0.7, 0.7)),
                [-0.829241, -0.778644, -0.833175, -0.818803], [-0.763443, -0.719239, -0.770664, -0.75691]),
    "kq_vo": (ModelConfig(dim=16, heads=2, dim_head=8, mlp_dim=16, kq_identity=True, vo_identity=True,
                          identity_scale=10.0),
              [-0.811193, -0.730858, -0.839251, -0.782563], [-0.739865, -0.676413, -0.77028, -0.728941]),
}


@pytest.mark.parametrize("name", BEFORE)
def test_defaults_compute_what_they_computed_before(name):
    cfg, before, after = BEFORE[name]
    out, out2, _ = outputs_and_one_step(cfg)
    assert out.tolist() == pytest.approx(before, abs=2e-6)
    assert out2.tolist() == pytest.approx(after, abs=2e-6)


def test_new_options_at_their_default_leave_the_config_dict_and_key_alone():
    for cfg in [*MODELS.values(), replace_mimetic(TRANSFORMER)]:
        d = cfg.to_dict()
        assert not {"rnn_cell", "lstm_init_state", "mimetic_form"} & set(d)
        assert ModelConfig.from_dict(d) == cfg
    d = AUTHORS_MODELS["RNN (ReLU Elman)"].to_dict()
    assert d["rnn_cell"] == "relu_elman" and ModelConfig.from_dict(d) == AUTHORS_MODELS["RNN (ReLU Elman)"]


def replace_mimetic(m):
    from dataclasses import replace
    return replace(m, mimetic=MIMETIC)


def test_every_committed_record_still_hashes_to_its_key():
    """Reading a record checks that its config hashes to its key (RunStore._read)."""
    store = RunStore(REPO_DATA)
    if not store.keys():
        pytest.skip("no committed run records in data/runs/")
    assert len(store.load()) == len(store.keys())


# ----------------------------------------------------------------------------- the authors' constructions


def test_relu_elman_is_one_relu_layer_on_embedding_and_state_of_one_width():
    cfg = ModelConfig(kind="rnn", dim=16, hidden=16, rnn_cell="relu_elman")
    m = build_model(cfg, 12, 3, "regression", seed=0)
    assert isinstance(m.rnn, ReluElman) and m.rnn.i2h.weight.shape == (16, 32)
    e = m.tok_emb(X)
    h = torch.zeros(len(X), 16)
    for t in range(X.shape[1]):
        h = torch.relu(e[:, t] @ m.rnn.i2h.weight[:, :16].T + h @ m.rnn.i2h.weight[:, 16:].T + m.rnn.i2h.bias)
    assert torch.allclose(m.features(X), h, atol=1e-6) and (h >= 0).all()
    out, out2, _ = outputs_and_one_step(cfg)
    assert torch.isfinite(out2).all() and not torch.equal(out, out2)
    assert not torch.allclose(out, outputs_and_one_step(ModelConfig(kind="rnn", dim=16, hidden=16))[0])


def test_lstm_normal_initial_state_is_drawn_at_every_forward():
    cfg = ModelConfig(kind="lstm", dim=16, hidden=16, lstm_init_state="normal")
    m = build_model(cfg, 12, 3, "regression", seed=0)
    a, b = m(X), m(X)
    assert not torch.allclose(a, b)                     # a fresh state each forward, in eval too
    m.eval()
    assert not torch.allclose(m(X), m(X))
    zeros = build_model(ModelConfig(kind="lstm", dim=16, hidden=16), 12, 3, "regression", seed=0)
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), zeros.parameters()))  # same weights
    assert not torch.allclose(a, zeros(X))              # the state is not zero
    out, out2, _ = outputs_and_one_step(cfg)
    assert torch.isfinite(out2).all()


@pytest.mark.parametrize("alpha, beta", [(0.7, 0.7), (1.0, 0.0), (0.0, 1.0)])
def test_authors_mimetic_form_uses_the_existing_init(alpha, beta):
    dim = 16
    plain = build_model(ModelConfig(dim=dim, heads=2, dim_head=dim, mlp_dim=16), 12, 3, "regression", seed=0)
    authors = build_model(ModelConfig(dim=dim, heads=2, dim_head=dim, mlp_dim=16, mimetic=(alpha, beta),
                                      mimetic_form="authors"), 12, 3, "regression", seed=0)
    for p_att, a_att in zip((b.attn for b in plain.blocks), (b.attn for b in authors.blocks)):
        for h in range(2):
            z = p_att.W_Q(h) @ p_att.W_K(h).T                   # the default init's W_Q W_Kᵀ
            want = math.sqrt(alpha) * z + math.sqrt(beta) * torch.eye(dim)
            assert torch.allclose(a_att.W_Q(h) @ a_att.W_K(h).T, want, atol=1e-5)
    fresh = build_model(ModelConfig(dim=dim, heads=2, dim_head=dim, mlp_dim=16, mimetic=(alpha, beta)),
                        12, 3, "regression", seed=0)
    if alpha:
        assert not torch.allclose(fresh.blocks[0].attn.w_q.weight, authors.blocks[0].attn.w_q.weight)
    out, out2, _ = outputs_and_one_step(ModelConfig(dim=dim, heads=2, dim_head=8, mlp_dim=16, mimetic=(alpha, beta),
                                                    mimetic_form="authors"))
    assert torch.isfinite(out2).all()


def test_labels_tell_the_constructions_apart():
    labels = {model_label(m) for m in AUTHORS_MODELS.values()}
    assert labels == {c.authors for c in COMPONENTS.values()} == set(AUTHORS_MODELS)
    ours = {model_label(m) for m in (MODELS["RNN"], MODELS["LSTM"], replace_mimetic(TRANSFORMER))}
    assert ours == {c.ours for c in COMPONENTS.values()} == set(OURS_MODELS) and not ours & labels


def test_figures_draw_the_authors_construction_and_keep_ours_as_the_variant():
    """Check 3's consequence: figures 2 and 7 hold the authors' rows (the very runs of the check),
    the variant components_ours holds ours, and each row has the paper's curve of its figure."""
    authors = {c.key for c in experiment("fidelity_components")}
    ours = {c.key for c in experiment("components_ours")}
    for figure in ("fig2", "fig7"):
        rows = {model_label(c.model): c.key for c in experiment(figure)}
        drawn = {c.authors for c in COMPONENTS.values() if c.figure == figure}
        assert drawn <= set(rows) and not {c.ours for c in COMPONENTS.values()} & set(rows)
    fig_keys = {c.key for f in ("fig2", "fig7") for c in experiment(f)}
    assert authors <= fig_keys and not ours & fig_keys and len(ours) == len(authors) == 108
    assert COMPONENTS["RNN"].paper == ("diff_architectures_gotu.pdf", "RNN, lr 0.001")
    assert COMPONENTS["mimetic"].paper == ("transformer_mimetic_n_gotu.pdf", "mimetic init, lr 0.001")


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "rnn", "rnn_cell": "gru"}, "unknown model rnn_cell 'gru'; allowed: tanh, relu_elman"),
    ({"kind": "lstm", "rnn_cell": "relu_elman"}, "rnn_cell='relu_elman' applies to kind 'rnn' only"),
    ({"kind": "rnn", "dim": 16, "hidden": 32, "rnn_cell": "relu_elman"}, "set hidden = dim and depth = 1"),
    ({"kind": "rnn", "dim": 16, "hidden": 16, "depth": 2, "rnn_cell": "relu_elman"}, "set hidden = dim"),
    ({"kind": "lstm", "lstm_init_state": "uniform"}, "allowed: zeros, normal"),
    ({"kind": "rnn", "lstm_init_state": "normal"}, "applies to kind 'lstm' only"),
    ({"mimetic_form": "theirs", "mimetic": (0.7, 0.7)}, "allowed: fresh, authors"),
    ({"mimetic_form": "authors"}, "needs mimetic=\\(alpha, beta\\)"),
    ({"mimetic_form": "authors", "mimetic": (-0.1, 0.7)}, "alpha, beta >= 0"),
])
def test_bad_option_values_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_the_authors_models_train():
    """One short smoke run of each authors' construction through the real training loop."""
    for c in [c for c in experiment("fidelity_components", "smoke") if c.data.n == 4]:
        r = fit(c)
        assert math.isfinite(r.metrics["test_loss"]) and r.metrics["epochs_run"] == c.train.epochs


# ----------------------------------------------------------------------------- the grids


def test_multiplier_grid_shares_the_stored_x1_and_x10_rows():
    grid = experiment("fidelity_multipliers")
    keys = {c.key for c in grid}
    fig12 = {c.key for name in ("fig1", "fig2") for c in experiment(name)}
    kq10 = {c.key for c in experiment("kq_scale")}
    cells = {}
    for c in grid:
        fam = {(True, False): "KQ", (False, True): "VO", (True, True): "both"}[(c.model.kq_identity, c.model.vo_identity)]
        cells.setdefault((c.task["name"], fam, c.model.identity_scale), set()).add((c.data.n, c.seed))
        if c.model.identity_scale == 1.0 and not (fam == "VO" and c.task["name"] == "same_different"):
            assert c.key in fig12                   # figures 1–2 have every ×1 row but VO on same/different
        if c.model.identity_scale == 10.0 and fam == "KQ":
            assert c.key in kq10
    assert set(cells) == {(t, f, m) for t in ("aba_abb", "same_different") for f in IDENTITY_FAMILIES for m in MULTIPLIERS}
    for (t, f, m), points in cells.items():
        n = N_MULTIPLIERS_VO if f == "VO" else N_MULTIPLIERS
        assert points == {(k, s) for k in n for s in SEEDS_PAPER}, (t, f, m)
    assert all(isinstance(m, float) for m in MULTIPLIERS) and len(keys) == len(grid)
    assert identity_model("KQ") == MODELS["transformer + KQ"]
    with pytest.raises(ValueError, match="allowed: KQ, VO, both"):
        identity_model("QK")


def test_component_grid_matches_the_stored_rows():
    grid = experiment("fidelity_components")
    ours = [c for c in experiment("components_ours") if model_label(c.model) == "RNN"]
    want = {(c.data.n, c.seed, c.train) for c in ours}
    for label in AUTHORS_MODELS:
        rows = [c for c in grid if model_label(c.model) == label]
        assert {(c.data.n, c.seed, c.train) for c in rows} == want, label
    assert {c.data.n for c in grid} == set(N_PAPER)


def test_width_grid_is_plain_and_kq_at_both_wider_widths_sharing_stored_rows():
    grid = experiment("fidelity_width")
    cells = {(c.task["name"], c.model.dim, c.model.heads, c.model.kq_identity): set() for c in grid}
    for c in grid:
        cells[(c.task["name"], c.model.dim, c.model.heads, c.model.kq_identity)].add((c.data.n, c.seed))
        assert not c.model.vo_identity and c.model.identity_scale == 1.0 and c.model.dim_head == 64
    assert set(cells) == {(t, m.dim, m.heads, kq) for t in ("aba_abb", "same_different")
                          for m in WIDE_MODELS.values() for kq in (False, True)}
    assert all(points == {(n, s) for n in N_WIDTH for s in SEEDS_PAPER} for points in cells.values())
    assert {c.train.precision for c in grid} == {"bf16"}  # adopted by fidelity_bf16's rule before these runs
    # the float32 runs of fig1_width and figure 5 at these widths are the grid's float32 twins, not members
    twins = {replace(c, train=replace(c.train, precision="32")).key for c in grid}
    shared = [c for c in experiment("fig1_width") if c.model.dim == 128]
    shared += [c for c in experiment("fig5") if c.model.heads == 8 and c.data.n in N_WIDTH]
    assert len(shared) >= 6 and {c.key for c in shared} <= twins
    assert not {c.key for c in shared} & {c.key for c in grid}


def test_cost_estimate_prices_missing_runs_from_comparable_records(tmp_path):
    store = RunStore(tmp_path)
    configs = experiment("fidelity_components")
    assert estimate_cpu_hours(configs, store)["unmatched"] == len(configs)
    stored = [c for c in experiment("components_ours") if model_label(c.model) == "RNN" and c.data.n == 16]
    for c in stored:
        store.put(RunResult(c.key, c.to_dict(), {"epochs_run": 100, "test_loss": 1.0}, [], 36.0, {"threads": 2}))
    rnn16 = [c for c in configs if model_label(c.model) == "RNN (ReLU Elman)" and c.data.n == 16]
    est = estimate_cpu_hours(rnn16 + stored, store)
    assert est == {"runs": 6, "stored": 3, "to_run": 3, "cpu_hours": 0.06, "cpu_hours_full": 0.6, "unmatched": 0}


# ----------------------------------------------------------------------------- check 2's rule

TASKS = {"aba_abb": "ABA vs ABB", "same_different": "same/different"}
FAMILY = {"KQ": (True, False), "VO": (False, True), "both": (True, True)}


def identity_frame(n_star: dict, mults=(1.0, 10.0, 100.0), seeds=(0, 1)) -> pd.DataFrame:
    """Synthetic runs: n_star[(family, task label, multiplier)] is where the curve drops below the
    threshold (None: never); every (family, task) of the paper plus VO on same/different."""
    rows = []
    for task in TASKS.values():
        for fam, (kq, vo) in FAMILY.items():
            top = 2048 if fam == "VO" else 512
            for m in mults:
                star = n_star.get((fam, task, m))
                for n in [2 ** i for i in range(2, 12) if 2 ** i <= top]:
                    for s in seeds:
                        rows.append({"task_label": task, "model.kq_identity": kq, "model.vo_identity": vo,
                                     "model.identity_scale": m, "n": n, "seed": s,
                                     "model": f"{fam} ×{m:g}",
                                     "test_loss": 0.01 if star is not None and n >= star else 1.0})
    return pd.DataFrame(rows)


def test_multiplier_table_reads_n_star_per_family_task_and_multiplier():
    t = multiplier_table(identity_frame({("KQ", "ABA vs ABB", 10.0): 64, ("VO", "same/different", 100.0): 2048}))
    assert t.loc[("ABA vs ABB", "KQ"), 10.0] == 64 and math.isnan(t.loc[("ABA vs ABB", "KQ"), 1.0])
    assert t.loc[("same/different", "VO"), 100.0] == 2048
    assert t.loc[("ABA vs ABB", "KQ"), "paper"] == 32 and t.loc[("ABA vs ABB", "VO"), "paper"] == 1024
    assert math.isnan(t.loc[("same/different", "VO"), "paper"])  # the paper does not plot it


def test_multipliers_close_every_gap_reproduced():
    closes = {("KQ", "ABA vs ABB", 100.0): 64, ("KQ", "same/different", 100.0): 128,
              ("VO", "ABA vs ABB", 10.0): 2048, ("both", "ABA vs ABB", 10.0): 128}
    c = multipliers_verdict(identity_frame(closes))
    assert c.verdict == "reproduced" and all(v for k, v in c.checks.items() if k.endswith("closes"))
    assert "×100 64" in c.measured and "(paper 32)" in c.measured


def test_multipliers_close_one_gap_partial():
    c = multipliers_verdict(identity_frame({("KQ", "ABA vs ABB", 1.0): 512, ("KQ", "ABA vs ABB", 100.0): 32}))
    assert c.verdict == "partial" and c.checks["KQ on ABA vs ABB: closes"]
    assert not c.checks["KQ on same/different: closes"]


def test_multiplier_moves_n_star_without_closing_partial():
    """×1 at 512, ×100 at 128: four times fewer samples, still 2 grid steps above 2 × 32."""
    c = multipliers_verdict(identity_frame({("KQ", "ABA vs ABB", 1.0): 512, ("KQ", "ABA vs ABB", 100.0): 128}))
    assert c.verdict == "partial" and c.checks["KQ on ABA vs ABB: moves"]
    assert not any(v for k, v in c.checks.items() if k.endswith("closes"))


def test_x1_never_below_counts_as_twice_the_largest_n():
    # VO ×1 never below up to 2048 (bound 4096); ×10 at 1024 is 4× below the bound: moves (and closes)
    c = multipliers_verdict(identity_frame({("VO", "ABA vs ABB", 10.0): 1024}))
    assert c.checks["VO on ABA vs ABB: moves"] and c.checks["VO on ABA vs ABB: closes"]
    # KQ ×1 never below up to 512 (bound 1024): ×10 at 512 moves only 2×
    c = multipliers_verdict(identity_frame({("KQ", "same/different", 10.0): 512}))
    assert not c.checks["KQ on same/different: moves"] and c.verdict == "not reproduced"


def test_multiplier_that_changes_nothing_not_reproduced():
    same = {(f, t, m): 512 for f in ("KQ", "both") for t in TASKS.values() for m in (1.0, 10.0, 100.0)}
    # (VO never below the threshold: at 512 it would already be within 2× of the paper's 1024)
    c = multipliers_verdict(identity_frame(same))
    assert c.verdict == "not reproduced" and not any(c.checks.values())


def test_multiplier_rule_needs_x1_and_a_larger_multiplier():
    with pytest.raises(ValueError, match="needs the ×1 rows"):
        multipliers_verdict(identity_frame({}, mults=(10.0, 100.0)))
    with pytest.raises(ValueError, match="fidelity_multipliers"):
        multipliers_verdict(identity_frame({}, mults=(1.0,)))
    f = identity_frame({})
    with pytest.raises(ValueError, match="VO on ABA vs ABB"):
        multipliers_verdict(f[~((f["model.vo_identity"]) & (~f["model.kq_identity"]) & (f.task_label == "ABA vs ABB"))])


# ----------------------------------------------------------------------------- check 3's rule


def component_rows(label: str, losses: pd.Series, seeds=(0, 1)) -> pd.DataFrame:
    return pd.DataFrame([{"model": label, "n": n, "seed": s, "test_loss": y} for n, y in losses.items() for s in seeds])


def components_frame(name: str, ours: pd.Series, theirs: pd.Series) -> pd.DataFrame:
    ours_label, authors_label, _ = COMPONENTS[name]
    return pd.concat([component_rows(ours_label, ours), component_rows(authors_label, theirs)], ignore_index=True)


def paper_of(name: str) -> pd.Series:
    return curve(*COMPONENTS[name].paper)


def crossing_at(c: pd.Series, n0: int) -> pd.Series:
    return c.where(c.index < n0, 0.05)


def test_log_gap():
    p = paper_of("RNN")
    assert log_gap(component_rows("x", p), p) == pytest.approx(0, abs=1e-12)
    assert log_gap(component_rows("x", 10 * p), p) == pytest.approx(1)
    tiny = pd.Series({4: 0.0, 8: 1e-5})
    assert log_gap(component_rows("x", pd.Series({4: 1e-6, 8: 0.0})), tiny) == 0  # both below GAP_FLOOR
    assert log_gap(component_rows("x", pd.Series({4: GAP_FLOOR * 10})), tiny) == pytest.approx(1)
    with pytest.raises(ValueError, match="share no n"):
        log_gap(component_rows("x", pd.Series({3: 1.0})), p)


def test_component_that_matches_the_paper_explains_its_gap():
    p = paper_of("RNN")
    c = components_verdict(components_frame("RNN", 2 * p, p), components=("RNN",))
    assert c.verdict == "reproduced" and c.checks == {"RNN: closer": True, "RNN: n* agrees": True}
    assert "→ 0.00 (authors')" in c.measured and "(paper > 8192)" in c.measured


def test_component_closer_but_crossing_too_early_partial():
    p = paper_of("RNN")
    c = components_verdict(components_frame("RNN", 10 * p, crossing_at(p, 512)), components=("RNN",))
    assert c.verdict == "partial" and c.checks == {"RNN: closer": True, "RNN: n* agrees": False}


def test_component_whose_n_star_agrees_where_ours_did_not_partial():
    p = paper_of("RNN")
    c = components_verdict(components_frame("RNN", crossing_at(p, 512), 10 * p), components=("RNN",))
    assert c.verdict == "partial" and c.checks == {"RNN: closer": False, "RNN: n* agrees": True}


def test_component_that_changes_nothing_not_reproduced():
    p = paper_of("LSTM")
    c = components_verdict(components_frame("LSTM", 2 * p, 2 * p), components=("LSTM",))
    assert c.verdict == "not reproduced"       # n* agrees (neither crosses) but ours did too, and no closer


def test_components_graded_together():
    parts = [components_frame("RNN", 2 * paper_of("RNN"), paper_of("RNN")),
             components_frame("LSTM", 2 * paper_of("LSTM"), 2 * paper_of("LSTM")),
             components_frame("mimetic", 3 * paper_of("mimetic"), paper_of("mimetic"))]
    frame = pd.concat(parts, ignore_index=True)
    c = components_verdict(frame)
    assert c.verdict == "partial" and c.ours == "RNN explains, LSTM no, mimetic explains"
    t = component_table(frame)
    assert t.loc[("RNN", "paper"), 2048] == paper_of("RNN")[2048]
    assert t.loc[("LSTM", "LSTM"), 4] == pytest.approx(2 * paper_of("LSTM")[4])


def test_component_rule_refuses_missing_rows_and_unknown_names():
    p = paper_of("RNN")
    with pytest.raises(ValueError, match="needs both rows of LSTM"):
        components_verdict(components_frame("RNN", p, p))
    with pytest.raises(ValueError, match="unknown component 'GRU'"):
        components_verdict(components_frame("RNN", p, p), components=("GRU",))


def test_paper_pairs_are_the_ones_the_paper_plots():
    assert set(PAPER_IDENTITY) == {("KQ", "ABA vs ABB"), ("VO", "ABA vs ABB"), ("both", "ABA vs ABB"),
                                   ("KQ", "same/different")}


# ----------------------------------------------------------------------------- check 1's rule

WIDTHS = {"dim 64, 2 heads": (64, 2), "dim 64, 8 heads": (64, 8), "dim 128, 4 heads": (128, 4)}


def width_frame(loss: dict, seeds=(0, 1, 2), n=8192) -> pd.DataFrame:
    """Synthetic plain and + KQ runs at ``n``: loss[(width, task)] is the plain model's test loss
    (ours defaults to 0.15; + KQ rows at 1e-4 must be ignored)."""
    rows = []
    for w, (dim, heads) in WIDTHS.items():
        for task in ("ABA vs ABB", "same/different"):
            for kq in (False, True):
                for s in seeds:
                    value = 1e-4 if kq else loss.get((w, task), 0.15)
                    rows.append({"task_label": task, "model.dim": dim, "model.heads": heads, "model.kq_identity": kq,
                                 "model.vo_identity": False, "n": n, "seed": s, "test_loss": value})
    return pd.DataFrame(rows)


def test_width_table_averages_the_plain_model_over_seeds():
    f = width_frame({})
    f.loc[(f["model.heads"] == 8) & ~f["model.kq_identity"] & (f.seed == 0), "test_loss"] = 0.45
    t = width_table(f)
    assert t.loc[("ABA vs ABB", "dim 64, 8 heads"), "test_loss"] == pytest.approx((0.45 + 0.15 + 0.15) / 3)
    assert t.loc[("same/different", "dim 64, 2 heads"), "seeds"] == 3


def test_a_wider_model_without_a_floor_on_both_tasks_reproduced():
    c = width_verdict(width_frame({("dim 64, 8 heads", "ABA vs ABB"): 1e-4, ("dim 64, 8 heads", "same/different"): 5e-3}))
    assert c.verdict == "reproduced" and "dim 64, 8 heads: gone" in c.ours


def test_the_floor_gone_on_one_task_only_partial():
    c = width_verdict(width_frame({("dim 128, 4 heads", "ABA vs ABB"): FLOOR_GONE / 2}))
    assert c.verdict == "partial" and c.checks["dim 128, 4 heads on ABA vs ABB: goes"]
    assert not c.checks["dim 128, 4 heads on same/different: goes"]


def test_a_floor_4x_lower_on_both_tasks_but_not_gone_partial():
    low = {("dim 128, 4 heads", t): 0.03 for t in ("ABA vs ABB", "same/different")}
    c = width_verdict(width_frame(low))
    assert c.verdict == "partial" and "dim 128, 4 heads: lower" in c.ours


def test_a_floor_that_stays_not_reproduced():
    c = width_verdict(width_frame({("dim 64, 8 heads", "ABA vs ABB"): 0.05}))  # 3× lower on one task only
    assert c.verdict == "not reproduced" and "0.05 (ours 0.15)" in c.measured


def test_width_rule_needs_our_row_and_a_wider_one_on_every_task():
    f = width_frame({})
    with pytest.raises(ValueError, match="sweep fidelity_width"):
        width_verdict(f[f["model.heads"] == 2])
    with pytest.raises(ValueError, match="same/different"):
        width_verdict(f[~((f.task_label == "same/different") & (f["model.heads"] == 2))])


def test_progress_table_counts_stored_runs_and_complete_seeds(tmp_path):
    from symlib.fidelity import CHECKS, progress_table
    store = RunStore(tmp_path)
    t = progress_table(store)
    assert list(t.grid) == list(CHECKS) and set(t["seeds complete"]) == {"none"}
    assert t.loc["3. the authors' components", "runs stored"] == "0 of 108"
    for c in experiment("fidelity_components", seeds=[1]):
        store.put(RunResult(c.key, c.to_dict(), {"epochs_run": 1, "test_loss": 1.0}, [], 1.0, {}))
    t = progress_table(store)
    assert t.loc["3. the authors' components", "runs stored"] == "36 of 108"
    assert t.loc["3. the authors' components", "seeds complete"] == "1"


# ----------------------------------------------------------------------------- check 4

def test_axes_grid_adds_the_papers_values_and_seeds_to_figure_5s_two_axes():
    from symlib.experiments import AXES_N, AXES_VALUES
    grid = experiment("fidelity_axes")
    cells = {(c.model.heads, c.model.dim) for c in grid}
    assert cells == {(h, 64) for h in (1, 2, 4, 8, 16)} | {(2, d) for d in (32, 64, 128, 256, 512)}
    assert AXES_VALUES == {"heads": [1, 2, 4, 8, 16], "dim": [32, 64, 128, 256, 512]}
    assert {(c.data.n, c.seed) for c in grid} == {(n, s) for n in AXES_N for s in SEEDS_PAPER} and len(grid) == 81
    assert {c.task["name"] for c in grid} == {"aba_abb"} and {c.train.precision for c in grid} == {"32"}
    fig5 = {c.key for c in experiment("fig5")}
    shared = [c for c in grid if c.key in fig5]  # figure 5's seed-0 runs at these n are the grid's seed 0
    assert len(shared) == 21 and {c.seed for c in shared} == {0}
    assert not any(c.model.kq_identity or c.model.vo_identity for c in grid)


def axes_frame(difficulty: dict[tuple[str, int], list[float]], n=(256, 1024, 4096)) -> pd.DataFrame:
    """Runs of check 4 whose test loss is 10**difficulty at every n, per (axis, value) one value per
    seed; the default (2 heads, dim 64) at 10**-1 unless given."""
    rows = []
    points = {("heads", 2): [-1.0] * 3, **difficulty}
    for (axis, value), per_seed in points.items():
        heads, dim = (value, 64) if axis == "heads" else (2, value)
        if axis == "dim" and value == 64:
            continue
        for seed, d in enumerate(per_seed):
            rows += [{"model.heads": heads, "model.dim": dim, "n": k, "seed": seed, "test_loss": 10 ** d} for k in n]
    return pd.DataFrame(rows)


HEADS_HELP = {("heads", 1): [-0.5, -0.4, -0.6], ("heads", 16): [-1.5, -1.2, -1.4]}
DIM_HURTS = {("dim", 32): [-1.5, -1.3, -1.4], ("dim", 512): [-0.6, -0.5, -0.7]}


def test_axes_table_gives_each_values_seed_band_and_floors_solved_losses():
    from symlib.fidelity import axes_table
    f = axes_frame({**HEADS_HELP, **DIM_HURTS, ("heads", 8): [-5.0, -1.0, -2.0]})
    t = axes_table(f)
    assert t.loc[("heads", 1)].tolist() == pytest.approx([-0.5, -0.6, -0.4, 3])
    assert t.loc[("heads", 8), "low"] == pytest.approx(math.log10(GAP_FLOOR))  # 1e-5 counts as solved: 1e-3
    assert t.loc[("heads", 2), "difficulty"] == t.loc[("dim", 64), "difficulty"] == pytest.approx(-1.0)  # the default is on both axes


def test_more_heads_help_and_larger_dim_hurts_beyond_the_seeds_reproduced():
    from symlib.fidelity import axes_verdict
    c = axes_verdict(axes_frame({**HEADS_HELP, **DIM_HURTS}))
    assert c.verdict == "reproduced" and all(c.checks.values())
    assert "heads 1 → 16: -0.50 → -1.37" in c.ours and "dim 32 → 512: -1.40 → -0.60" in c.ours


def test_bands_that_overlap_do_not_count_partial_and_not_reproduced():
    from symlib.fidelity import axes_verdict
    close_heads = {("heads", 1): [-0.5, -0.4, -1.3], ("heads", 16): [-1.5, -1.2, -1.4]}  # 1 head's band reaches 16's
    assert axes_verdict(axes_frame({**close_heads, **DIM_HURTS})).verdict == "partial"
    close_dim = {("dim", 32): [-1.5, -1.3, -0.6], ("dim", 512): [-0.6, -0.5, -0.7]}
    assert axes_verdict(axes_frame({**HEADS_HELP, **close_dim})).verdict == "partial"
    assert axes_verdict(axes_frame({**close_heads, **close_dim})).verdict == "not reproduced"


def test_a_larger_dim_that_is_easier_where_it_generalizes_does_not_hurt():
    from symlib.fidelity import axes_verdict
    f = axes_frame({**HEADS_HELP, **DIM_HURTS})
    dim512 = (f["model.dim"] == 512) & (f.n == 4096)
    f.loc[dim512, "test_loss"] = 1e-3  # dim 512 learns n = 4096 better than dim 32 (10**-1.4 = 0.04)
    f.loc[(f["model.dim"] == 512) & (f.n < 4096), "test_loss"] = 1.0  # yet its band is still above
    c = axes_verdict(f)
    assert c.checks["dim 512 above dim 32 (bands apart)"] and not c.checks["dim 512 never easier where either generalizes"]
    assert c.verdict == "partial"


def test_axes_figure_draws_one_line_per_value_on_each_axis():
    import matplotlib.pyplot as plt
    from symlib.fidelity import axes_figure
    fig = axes_figure(axes_frame({**HEADS_HELP, **DIM_HURTS, ("heads", 8): [-1.2] * 3}))
    heads, dim = fig.axes[:2]
    assert [t.get_text() for t in heads.get_legend().get_texts()] == ["1", "2", "8", "16"]
    assert [t.get_text() for t in dim.get_legend().get_texts()] == ["32", "64", "512"]
    assert "more heads help" in heads.get_title() and "larger hurts" in dim.get_title()
    plt.close(fig)


def test_axes_rule_refuses_missing_ends_and_incomplete_seeds():
    from symlib.fidelity import axes_verdict
    with pytest.raises(ValueError, match="check 4 needs runs at heads = 16"):
        axes_verdict(axes_frame({("heads", 1): [-0.5] * 3, **DIM_HURTS}))
    f = axes_frame({**HEADS_HELP, **DIM_HURTS})
    f = f.drop(f[(f["model.heads"] == 16) & (f.seed == 2) & (f.n == 4096)].index)
    with pytest.raises(ValueError, match=r"heads = 16, seed 2 has n = \[256, 1024\], not every n"):
        axes_verdict(f)


def figure5_claims(more_heads: bool, dim_verdict: str) -> dict:
    """Figure 5's two readings as its one seed gave them (depth always helps)."""
    from symlib.claims import Claim
    dim_checks = {"reproduced": (True, True), "partial": (False, True), "not reproduced": (False, False)}[dim_verdict]
    return {"hp_depth_heads": Claim("hp_depth_heads", "reproduced" if more_heads else "partial", "fig 5 heads (seed 0)",
                                    "depth +0.1 → -0.5, heads -0.4 → -0.9", {"deeper": True, "more heads": more_heads}),
            "hp_embedding_dim": Claim("hp_embedding_dim", dim_verdict, "fig 5 dim (seed 0)", "dim 32 → 256",
                                      dict(zip(("harder beyond one seed's noise", "never easier where they generalize"),
                                               dim_checks)))}


def regraded(fig5: dict, frame) -> list:
    """Check 4's re-grade of figure 5's rows, on check 4's verdict of ``frame`` (as the chapter calls it)."""
    from symlib.fidelity import axes_verdict, figure5_regraded
    return figure5_regraded(fig5, axes_verdict(frame), frame)


def test_check_4_regrades_only_the_axes_it_reads_differently_from_figure_5():
    f = axes_frame({**HEADS_HELP, **DIM_HURTS})  # check 4: both readings hold on three seeds
    assert regraded(figure5_claims(True, "reproduced"), f) == []  # figure 5 read both the same: nothing changes
    (dim,) = regraded(figure5_claims(True, "partial"), f)
    assert dim.claim == "hp_embedding_dim" and dim.verdict == "reproduced" and all(dim.checks.values())
    assert dim.measured.startswith("Re-graded by check 4 (seeds 0, 1, 2)") and "read it partial: fig 5 dim" in dim.measured
    assert dim.ours == "check 4: dim 32 → 512: -1.40 → -0.60 (seeds 0, 1, 2)"


def test_check_4_overlapping_heads_bands_take_back_figure_5s_heads_but_keep_its_depth():
    close_heads = {("heads", 1): [-0.5, -0.4, -1.3], ("heads", 16): [-1.5, -1.2, -1.4]}
    heads, = regraded(figure5_claims(True, "reproduced"), axes_frame({**close_heads, **DIM_HURTS}))
    assert heads.claim == "hp_depth_heads" and heads.verdict == "partial"
    assert heads.checks == {"deeper": True, "more heads: 16 heads below 1 (bands apart), check 4": False}
    assert "16 heads not below 1 head beyond the seeds" in heads.measured and "1: -0.73 [-1.30, -0.40]" in heads.measured
    assert heads.ours.startswith("depth +0.1 → -0.5, heads -0.4 → -0.9; check 4: heads 1 → 16: -0.73 → -1.37")
    # the reverse: figure 5's one seed missed what three seeds show
    both = regraded(figure5_claims(False, "not reproduced"), axes_frame({**HEADS_HELP, **DIM_HURTS}))
    assert [(c.claim, c.verdict) for c in both] == [("hp_depth_heads", "reproduced"), ("hp_embedding_dim", "reproduced")]


# ----------------------------------------------------------------------------- speed: bf16

def bf16_frames(bf16_loss: dict | None = None, bf16_train: dict | None = None):
    """float32 runs, their bf16 twins and figure-2 seeds of two models at two n: the transformer
    (seeds 0.10–0.20 apart at n = 2048, log spread 0.30) and the MLP (all at 1.00);
    ``bf16_loss``/``bf16_train``: {(model, n): value} overrides."""
    rows, seeds = [], []
    for model, n, loss in (("transformer", 256, 0.8), ("transformer", 2048, 0.1), ("MLP", 256, 1.0), ("MLP", 2048, 1.0)):
        base = {"task_label": "ABA vs ABB", "model": model, "n": n, "seed": 0}
        rows.append({**base, "test_loss": loss, "train_loss": 1e-5, "precision": "32"})
        rows.append({**base, "test_loss": (bf16_loss or {}).get((model, n), loss),
                     "train_loss": (bf16_train or {}).get((model, n), 1e-5), "precision": "bf16"})
        for s, f in enumerate((1.0, 1.5, 2.0) if model == "transformer" else (1.0, 1.0, 1.0)):
            seeds.append({**base, "seed": s, "test_loss": loss * f})
    f = pd.DataFrame(rows)
    return f[f.precision == "32"], f[f.precision == "bf16"], pd.DataFrame(seeds)


def test_bf16_table_pairs_runs_and_takes_the_seed_spread_as_tolerance():
    t = bf16_table(*bf16_frames({("transformer", 2048): 0.15})).set_index(["model", "n"])
    assert t.loc[("transformer", 2048), "tol"] == pytest.approx(math.log10(2.0))
    assert t.loc[("MLP", 256), "tol"] == BF16_TOL                       # seeds identical: the least tolerance
    assert t.loc[("transformer", 2048), "dlog"] == pytest.approx(math.log10(1.5))
    assert t.agrees.all()


def test_bf16_that_agrees_and_fits_is_adopted():
    c = bf16_verdict(bf16_table(*bf16_frames()))
    assert (c.verdict, c.ours) == ("reproduced", "adopted")
    assert "agree within the seed spread on 4 of 4" in c.measured and "where float32 does on 4 of 4" in c.measured


def test_bf16_off_on_the_mlp_only_is_adopted_for_transformers_only():
    c = bf16_verdict(bf16_table(*bf16_frames({("MLP", 2048): 1.3})))    # log10 1.3 = 0.11 > 0.05
    assert (c.verdict, c.ours) == ("partial", "transformers only") and not c.checks["MLP n = 2048"]
    assert "largest gap 0.11 in log10, MLP at n = 2048: 1 → 1.3" in c.measured


def test_bf16_run_that_stops_fitting_is_not_adopted_even_if_its_test_loss_agrees():
    c = bf16_verdict(bf16_table(*bf16_frames(bf16_train={("transformer", 256): 0.02})))
    assert (c.verdict, c.ours) == ("not reproduced", "not adopted")
    assert "where float32 does on 3 of 4" in c.measured


def test_bf16_run_without_a_float32_twin_is_refused():
    fp32, bf16, seeds = bf16_frames()
    with pytest.raises(ValueError, match="no float32 twin for the bf16 runs of MLP at n = 2048"):
        bf16_table(fp32[~((fp32.model == "MLP") & (fp32.n == 2048))], bf16, seeds)


def test_bf16_grid_is_the_protocol_runs_under_bf16():
    fp32 = experiment("protocol") + experiment("protocol_large")
    bf16 = experiment("fidelity_bf16")
    assert [c.train.precision for c in bf16] == ["bf16"] * len(fp32) == ["bf16"] * 16
    assert [replace(c, train=replace(c.train, precision="32")).key for c in bf16] == [c.key for c in fp32]


def test_width_bf16_table_pairs_check_1s_runs_with_their_float32_twins(tmp_path):
    from symlib.fidelity import width_bf16_table
    store = RunStore(tmp_path)
    grid = experiment("fidelity_width")
    assert width_bf16_table(store.frame(grid), store).empty  # nothing stored yet
    cell = [c for c in grid if c.model.dim == 128 and not c.model.kq_identity and c.data.n == 1024
            and c.task["name"] == "same_different"]
    losses = {0: 0.20, 1: 0.05, 2: 0.40}                     # bf16, seeds 0-2: a spread of 0.9 in log10
    for c in cell:
        store.put(RunResult(c.key, c.to_dict(), {"test_loss": losses[c.seed], "train_loss": 1e-4}, [], 1.0, {}))
    twin = replace(cell[0], train=replace(cell[0].train, precision="32"))
    assert cell[0].seed == 0 and twin in experiment("fig1_width")  # figure 1's wider run, in float32
    store.put(RunResult(twin.key, twin.to_dict(), {"test_loss": 0.5, "train_loss": 1e-4}, [], 1.0, {}))
    table = width_bf16_table(store.frame(grid), store)
    assert len(table) == 1 and table.model[0] == "dim 128, 4 heads · transformer"
    assert table.test_loss_fp32[0] == 0.5 and table.test_loss_bf16[0] == 0.2
    assert table.tol[0] == pytest.approx(math.log10(0.40 / 0.05)) and bool(table.agrees[0])


# ----------------------------------------------------------------------------- before and after


def test_check_2_stands_in_with_the_multiplier_of_the_smallest_n_star():
    from symlib.fidelity import as_figure_curves
    f = identity_frame({("KQ", "ABA vs ABB", 1.0): 512, ("KQ", "ABA vs ABB", 10.0): 128, ("KQ", "ABA vs ABB", 100.0): 128,
                        ("VO", "ABA vs ABB", 100.0): 1024})
    a = as_figure_curves("fidelity_multipliers", f)
    kq = a[(a.figure == "fig2") & (a.model == "transformer + KQ")]
    assert set(kq.change) == {"check 2: identity ×10 (the smallest n*)"}   # a tie goes to the smaller multiplier
    assert set(a[(a.figure == "fig2") & (a.model == "transformer + VO")].change) == {"check 2: identity ×100 (the smallest n*)"}
    assert set(a[(a.figure == "fig1") & (a.model == "transformer + KQ")].change) == {"check 2: identity ×1 (the smallest n*)"}
    assert set(a.figure) == {"fig1", "fig2"} and len(kq) == len(f[(f.model == "KQ ×10") & (f.task_label == "ABA vs ABB")])


def test_checks_1_and_3_stand_in_for_their_curves():
    from symlib.fidelity import as_figure_curves
    rows = pd.concat([component_rows(COMPONENTS[name][1], pd.Series({64: 0.5})) for name in COMPONENTS], ignore_index=True)
    a = as_figure_curves("fidelity_components", rows)
    assert dict(zip(a.model, a.figure)) == {c.authors: c.figure for c in COMPONENTS.values()}
    w = as_figure_curves("fidelity_width", width_frame({}))
    assert set(w.model) == {"transformer"} and len(w) == len(width_frame({})) // 2    # + KQ is left out
    assert set(zip(w.figure, w.task_label)) == {("fig2", "ABA vs ABB"), ("fig1", "same/different")}
    assert "check 1: dim 128, 4 heads" in set(w.change)
    with pytest.raises(ValueError, match="unknown check grid 'fig2'; allowed"):
        as_figure_curves("fig2", rows)


def test_before_after_shows_each_changed_curve_before_its_changes():
    from symlib.fidelity import before_after

    def curve_rows(model, star, top=4096):
        return pd.DataFrame([{"model": model, "n": n, "seed": s, "test_loss": 0.01 if n >= star else 1.0}
                             for n in (2 ** i for i in range(4, 13) if 2 ** i <= top) for s in (0, 1)])
    fig2 = pd.concat([curve_rows("transformer", 4096), curve_rows("transformer + KQ", 512)], ignore_index=True)
    after = curve_rows("transformer + KQ", 64, top=512).assign(figure="fig2", change="check 2: identity ×10")
    t = before_after({"fig2": fig2, "fig7": fig2}, after)
    assert list(t.index) == [("fig2", "transformer + KQ", "the book's runs before the checks"),
                             ("fig2", "transformer + KQ", "check 2: identity ×10")]
    assert list(t["paper n*"]) == ["32", "32"] and list(t["ours n*"]) == ["512", "64"]
    assert list(t["ours / paper"]) == ["16×", "2×"]
    assert before_after({"fig2": fig2}, after.iloc[:0]).empty


def test_before_checks_puts_our_components_back_under_the_figures_rows():
    from symlib.fidelity import before_checks
    rnn, lstm, mim = (COMPONENTS[k] for k in ("RNN", "LSTM", "mimetic"))
    fig2 = pd.concat([component_rows("transformer", pd.Series({64: 1.0})), component_rows(rnn.authors, pd.Series({64: 0.5})),
                      component_rows(lstm.authors, pd.Series({64: 0.5}))], ignore_index=True)
    ours = pd.concat([component_rows(rnn.ours, pd.Series({64: 2.0})), component_rows(lstm.ours, pd.Series({64: 3.0})),
                      component_rows(mim.ours, pd.Series({64: 4.0}))], ignore_index=True)
    before = before_checks({"fig2": fig2}, ours)
    assert set(before) == {"fig2"} and len(before["fig2"]) == len(fig2)
    got = before["fig2"].groupby("model").test_loss.mean()
    assert got.to_dict() == {"transformer": 1.0, rnn.authors: 2.0, lstm.authors: 3.0}   # our rows, the figure's labels
    assert fig2.groupby("model").test_loss.mean()[rnn.authors] == 0.5                  # the input is left alone
    with pytest.raises(ValueError, match="needs runs labelled 'RNN' \\(experiment components_ours\\)"):
        before_checks({"fig2": fig2}, ours[ours.model != rnn.ours])

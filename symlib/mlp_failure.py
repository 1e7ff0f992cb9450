"""Why an MLP on one-hot inputs cannot reason with unseen symbols (brief §4.1).

The MLP's first layer is ``OneHotLinear``: the pre-activation of a string ``x`` is
``z = Σ_p W[p, x_p] + b``, one row ``W[p, t]`` per (position, token).  Two facts, each checked
here exactly on trained models:

* **frozen rows** — a row whose token never occurs at that position in training gets exactly
  zero gradient, so SGD and Adam (without weight decay) never move it;
* **equivariance** — training commutes with any per-position permutation of the unseen tokens
  (``π = (π_1, …, π_k)``, each ``π_p`` fixing the training tokens); this holds for any
  coordinate-wise optimiser, weight decay included.  With an i.i.d. initialisation the outputs
  on ``αα`` and ``αβ`` (unseen ``α ≠ β``) therefore have the same distribution;
* **rotations** — :func:`rotation_gap`: the orthogonal ("rotation") form of equivariance holds for
  (S)GD and momentum, with or without weight decay, and fails for Adam with L2 weight decay.

:func:`two_sample_experiment` tests that last consequence over many initialisation seeds (a paired
KS permutation test, :func:`paired_ks_test`); :func:`across_n` measures the test loss
``1 + E[F²] − 2 E[yF]`` across ``n``, or any other analysis of a trained net, such as
:func:`unseen_rows_effect` (what the frozen unseen rows do to MLP + XXᵀ's test loss, used by the
chapter *Regression experiments*).  Results that take minutes are computed once into
``data/mlp_failure/*.json`` by :func:`symlib.store.cached_result` (atomic, with config and provenance);
:func:`two_sample_figure` and :func:`across_n_figure` draw them.  Chapter: *MLPs cannot reason with unseen symbols*.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from scipy import stats

from .data import DataConfig, TaskData, make_data
from .models import MLP, ModelConfig, model_for
from .runs import RunConfig, TrainConfig, provenance, run_config
from .store import RunStore, atomic_write_text, cached_result, default_root
from .tasks import from_spec
from .training import fit, loss_fn

# ----------------------------------------------------------------------------- rows of the first layer


def first_layer_rows(model: MLP, length: int) -> torch.Tensor:
    """The first-layer weight as ``(k, vocab, hidden)``: ``[p, t]`` is the row of (position p, token t)."""
    if not isinstance(model, MLP):
        raise ValueError(f"expected a symlib MLP (kind 'mlp' or 'mlp_xxt'); got {type(model).__name__}")
    return model.first.weight.view(length, model.first.vocab_size, -1)


def seen_mask(data: TaskData) -> torch.Tensor:
    """``(k, vocab)`` bool: True where token t occurs at position p in the training strings."""
    x = data.x["train"]                                        # (N, k)
    mask = torch.zeros(x.shape[1], data.vocab_size, dtype=torch.bool)
    for p in range(x.shape[1]):
        mask[p, x[:, p].unique()] = True
    return mask


def first_layer_gradient(model: MLP, data: TaskData) -> torch.Tensor:
    """``(k, vocab, hidden)`` gradient of the full-batch training loss w.r.t. the first layer."""
    model.zero_grad()
    loss_fn(data.task.kind, model(data.x["train"]), data.y["train"]).backward()
    grad = first_layer_rows_grad(model, data.task.length)
    model.zero_grad()
    return grad


def first_layer_rows_grad(model: MLP, length: int) -> torch.Tensor:
    return model.first.weight.grad.detach().view(length, model.first.vocab_size, -1).clone()


def scale_unseen_rows_(model: MLP, data: TaskData, factor: float) -> None:
    """Multiply in place the first-layer rows of every (position, token) never seen in training —
    the rows that keep their initial values — by ``factor`` (0 removes them)."""
    rows = first_layer_rows(model, data.task.length)  # a view of model.first.weight
    with torch.no_grad():
        rows[~seen_mask(data)] *= factor


def unseen_rows_to_seen_mean_(model: MLP, data: TaskData) -> None:
    """Set in place every unseen first-layer row to the mean of the rows seen at its position:
    a test token then adds what a typical *trained* token adds."""
    rows, seen = first_layer_rows(model, data.task.length), seen_mask(data)
    with torch.no_grad():
        for p in range(data.task.length):
            rows[p, ~seen[p]] = rows[p, seen[p]].mean(0)


def unseen_rows_effect(net: MLP, data: TaskData, factors=(0.0, 1.0, 2.0)) -> dict[str, float]:
    """Test MSE of a trained MLP after editing the first-layer rows of its unseen tokens (every
    test string's tokens are unseen): scaled by each of ``factors`` (``test_mse_x1`` is the net as
    trained; ``x0`` removes the frozen random rows), and replaced by the mean seen row of their
    position (``test_mse_seen_mean``).  Chapter *Regression experiments*, figure 6 (an MLP given
    X Xᵀ)."""
    def test_mse(edit) -> float:
        edited = copy.deepcopy(net)
        edit(edited)
        return loss_decomposition(edited, data)["test_mse"]

    out = {f"test_mse_x{a:g}": test_mse(lambda m, a=a: scale_unseen_rows_(m, data, a)) for a in factors}
    out["test_mse_seen_mean"] = test_mse(lambda m: unseen_rows_to_seen_mean_(m, data))
    return out


def row_change(init: MLP, trained: MLP, data: TaskData) -> dict[str, float]:
    """Largest absolute change of first-layer entries on unseen and on seen (position, token) rows."""
    k = data.task.length
    delta = (first_layer_rows(trained, k) - first_layer_rows(init, k)).detach().abs()  # (k, V, h)
    seen = seen_mask(data)
    return {"unseen_max_change": float(delta[~seen].max()), "seen_max_change": float(delta[seen].max()),
            "unseen_rows": int((~seen).sum()), "seen_rows": int(seen.sum())}


# ----------------------------------------------------------------------------- equivariance


def permute_unseen_(model: MLP, data: TaskData, perms: list[torch.Tensor]) -> None:
    """Apply ``π = (π_1, …, π_k)`` to the first layer in place: row ``[p, π_p(t)]`` becomes the old
    row ``[p, t]``, so that ``f(π x; π·θ) = f(x; θ)``.  Each ``perms[p]`` is a permutation of the
    vocabulary (a ``(vocab,)`` index tensor) that must fix every token seen at position ``p``."""
    k, vocab = data.task.length, data.vocab_size
    if len(perms) != k:
        raise ValueError(f"need one permutation per position ({k}); got {len(perms)}")
    seen = seen_mask(data)
    rows = first_layer_rows(model, k)
    with torch.no_grad():
        for p, pi in enumerate(perms):
            pi = torch.as_tensor(pi)
            if pi.shape != (vocab,) or not torch.equal(pi.sort().values, torch.arange(vocab)):
                raise ValueError(f"perms[{p}] must be a permutation of range({vocab})")
            fixed = torch.arange(vocab)[seen[p]]
            if not torch.equal(pi[fixed], fixed):
                raise ValueError(f"perms[{p}] moves a token seen at position {p} in training; "
                                 "only unseen tokens may be permuted")
            new = torch.empty_like(rows[p])
            new[pi] = rows[p]
            rows[p].copy_(new)


def apply_perms(x: torch.Tensor, perms: list[torch.Tensor]) -> torch.Tensor:
    """``π x``: token ``x[:, p]`` becomes ``perms[p][x[:, p]]``.  ``x``: (N, k)."""
    return torch.stack([torch.as_tensor(pi)[x[:, p]] for p, pi in enumerate(perms)], dim=1)


def swap_unseen(data: TaskData, pairs: list[tuple[int, int, int]]) -> list[torch.Tensor]:
    """Per-position permutations made of transpositions ``(position, token a, token b)``."""
    perms = [torch.arange(data.vocab_size) for _ in range(data.task.length)]
    for p, a, b in pairs:
        perms[p][a], perms[p][b] = b, a
    return perms


def train_full_batch(model: nn.Module, data: TaskData, steps: int, optimizer: str = "adam",
                     lr: float = 1e-3, weight_decay: float = 0.0) -> nn.Module:
    """Plain full-batch training from the model's *current* parameters (``symlib.fit`` always starts
    from a fresh seeded initialisation; the equivariance check needs to start from ``π·θ₀``)."""
    makers = {"adam": lambda p: torch.optim.Adam(p, lr=lr, weight_decay=weight_decay),
              "sgd": lambda p: torch.optim.SGD(p, lr=lr, weight_decay=weight_decay),
              "momentum": lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=weight_decay)}
    if optimizer not in makers:
        raise ValueError(f"optimizer must be one of {', '.join(makers)}; got {optimizer!r}")
    opt = makers[optimizer](model.parameters())
    x, y = data.x["train"], data.y["train"]
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(data.task.kind, model(x), y).backward()
        opt.step()
    return model


def equivariance_gap(cfg: ModelConfig, data: TaskData, perms: list[torch.Tensor], seed: int = 0,
                     steps: int = 200, optimizer: str = "adam", lr: float = 1e-3,
                     weight_decay: float = 0.0) -> dict[str, float]:
    """Train from ``θ₀`` and from ``π·θ₀`` and compare ``f(π x; θ'_T)`` with ``f(x; θ_T)`` on the test
    strings: the theorem says they are equal (``max_gap`` ≈ float rounding).  Also reports how far
    the unseen rows moved (non-zero with weight decay, where the frozen-rows lemma does not apply)."""
    task = data.task
    a = model_for(cfg, data, seed=seed)
    b = model_for(cfg, data, seed=seed)
    init = model_for(cfg, data, seed=seed)
    permute_unseen_(b, data, perms)
    for m in (a, b):
        train_full_batch(m, data, steps, optimizer, lr, weight_decay)
    x = data.x["test"]
    with torch.no_grad():
        fa, fb = a(x), b(apply_perms(x, perms))
        moved = row_change(init, a, data)["unseen_max_change"]
    return {"max_gap": float((fa - fb).abs().max()), "output_scale": float(fa.abs().max()),
            "unseen_max_change": moved}


def rotate_unseen_(model: MLP, data: TaskData, rotations: dict[int, torch.Tensor], inverse: bool = False) -> None:
    """Apply an orthogonal map to the unseen rows of each listed position, in place:
    ``rows[p, U_p] ← Q_p rows[p, U_p]`` (``Qᵀ`` if ``inverse``), with ``U_p`` the tokens unseen at
    position p in training (ascending ids) and ``rotations[p]`` a ``(|U_p|, |U_p|)`` orthogonal matrix.
    On one-hot inputs this is the "rotation" action: ``f(Q x; Q·θ) = f(x; θ)`` for inputs rotated the same way."""
    seen = seen_mask(data)
    rows = first_layer_rows(model, data.task.length)
    with torch.no_grad():
        for p, Q in rotations.items():
            unseen = torch.arange(data.vocab_size)[~seen[p]]
            Q = torch.as_tensor(Q, dtype=rows.dtype)
            if Q.shape != (len(unseen), len(unseen)) or not torch.allclose(Q @ Q.T, torch.eye(len(unseen), dtype=Q.dtype), atol=1e-5):
                raise ValueError(f"rotations[{p}] must be an orthogonal ({len(unseen)}, {len(unseen)}) matrix")
            rows[p, unseen] = (Q.T if inverse else Q) @ rows[p, unseen]


def random_rotation(size: int, seed: int = 0) -> torch.Tensor:
    """A Haar-random orthogonal ``(size, size)`` matrix (QR of a Gaussian matrix, signs fixed)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(size, size, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def rotation_gap(cfg: ModelConfig, data: TaskData, rotations: dict[int, torch.Tensor], seed: int = 0,
                 steps: int = 100, optimizer: str = "sgd", lr: float = 1e-2, weight_decay: float = 0.0) -> dict[str, float]:
    """Train from ``θ₀`` and from ``Q·θ₀`` (:func:`rotate_unseen_`), rotate the second run back, and
    compare outputs on the test strings: ``max_gap`` ≈ float rounding iff training commutes with
    the rotation.  It does for (S)GD and momentum (linear in the gradient, and ``∇L(Qθ) = Q∇L(θ)``
    for orthogonal Q) and for Adam without weight decay (unseen rows never move); Adam's
    coordinate-wise normalisation of an L2 weight-decay gradient ``λθ`` does not commute with Q."""
    task = data.task
    a = model_for(cfg, data, seed=seed)
    b = model_for(cfg, data, seed=seed)
    rotate_unseen_(b, data, rotations)
    for m in (a, b):
        train_full_batch(m, data, steps, optimizer, lr, weight_decay)
    rotate_unseen_(b, data, rotations, inverse=True)
    x = data.x["test"]
    with torch.no_grad():
        fa, fb = a(x), b(x)
    return {"max_gap": float((fa - fb).abs().max()), "output_scale": float(fa.abs().max())}


# ----------------------------------------------------------------------------- two-sample test


def same_and_different(data: TaskData, rng: np.random.Generator) -> torch.Tensor:
    """Two fresh test strings ``αα`` and ``γδ`` with distinct tokens of the test alphabet: ``(2, 2)``."""
    lo, hi = data.offsets["test"], data.vocab_size
    a, c, d = rng.choice(np.arange(lo, hi), size=3, replace=False)
    return torch.tensor([[a, a], [c, d]])


def ks_statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Two-sample Kolmogorov–Smirnov statistic ``sup_z |F_x(z) − F_y(z)|``, vectorised over leading axes."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    pooled = np.concatenate([x, y], axis=-1)
    label = np.concatenate([np.ones(x.shape[-1]), np.zeros(y.shape[-1])])
    order = np.argsort(pooled, axis=-1, kind="stable")
    lab = label[order]
    cdf_gap = np.cumsum(lab, -1) / x.shape[-1] - np.cumsum(1 - lab, -1) / y.shape[-1]
    return np.abs(cdf_gap).max(-1)


def paired_ks_test(same: np.ndarray, diff: np.ndarray, n_resamples: int = 9999, seed: int = 0) -> dict:
    """Is ``(F(αα), F(γδ))`` exchangeable?  A permutation test that swaps the two outputs of a seed
    at random (valid for paired samples, unlike the plain KS test), with the KS statistic."""
    same, diff = np.asarray(same, dtype=float), np.asarray(diff, dtype=float)
    if same.shape != diff.shape or same.ndim != 1 or len(same) < 2:
        raise ValueError(f"need two 1-d arrays of equal length >= 2; got shapes {same.shape} and {diff.shape}")
    res = stats.permutation_test((same, diff), ks_statistic, permutation_type="samples", vectorized=True,
                                 n_resamples=n_resamples, alternative="greater",
                                 random_state=np.random.default_rng(seed))
    return {"ks": float(res.statistic), "p_value": float(res.pvalue), "n_resamples": n_resamples,
            "mean_same": float(same.mean()), "mean_diff": float(diff.mean())}


def two_sample_experiment(model: ModelConfig, seeds: list[int], n: int = 64, steps: int = 300,
                          lr: float = 1e-3, data: dict | None = None) -> dict:
    """One MLP per initialisation seed, trained on same/different (Adam, full batch — the paper's
    protocol for n <= 1024, as a plain loop: ``symlib.fit``'s Lightning overhead would dominate these
    tiny runs), then read on one fresh ``αα`` and one fresh ``γδ`` of unseen tokens.  Seed ``s``
    draws the initialisation, the training set and the test strings."""
    task = from_spec({"name": "same_different"})
    rows = []
    for s in seeds:
        task_data = make_data(task, DataConfig(n=n, **(data or {})), seed=s)
        net = model_for(model, task_data, seed=s)
        train_full_batch(net, task_data, steps, "adam", lr)
        strings = same_and_different(task_data, np.random.default_rng([s, 7]))
        with torch.no_grad():
            net.eval()
            out = net(strings)
            train_loss = float(loss_fn(task.kind, net(task_data.x["train"]), task_data.y["train"]))
        rows.append({"seed": s, "same": float(out[0]), "diff": float(out[1]), "train_loss": train_loss,
                     **loss_decomposition(net, task_data)})
    return {"rows": rows}


# ----------------------------------------------------------------------------- test loss across n


def loss_decomposition(net: nn.Module, data: TaskData) -> dict[str, float]:
    """Test MSE on ±1 labels split as ``1 + E[F²] − 2 E[yF]``: the theorem says ``E[yF] = 0`` in
    expectation for the MLP, so the loss is ``1 + E[F²] ≥ 1``."""
    with torch.no_grad():
        f, y = net.eval()(data.x["test"]), data.y["test"]
    return {"test_mse": float(((f - y) ** 2).mean()), "mean_f2": float((f ** 2).mean()),
            "mean_yf": float((y * f).mean()), "mean_y2": float((y ** 2).mean())}


def across_n(configs: list[RunConfig], path: Path | None, store: RunStore | None = None,
             analysis: Callable[[nn.Module, TaskData], dict] | None = None) -> list[dict]:
    """For each config: its run (trained, and stored if the store lacks it) and ``analysis`` of
    the trained net (default :func:`loss_decomposition`, the test loss split), kept in the JSON
    file ``path`` (written atomically after every run, so an interrupted call loses nothing;
    ``None``: write nothing).  A run whose row is already in ``path`` is not retrained.  A run
    the store already holds is retrained for its net (training is deterministic) and its record
    is left as it is."""
    store = store or RunStore()
    analysis = analysis or loss_decomposition
    path = None if path is None else Path(path)
    done = {r["key"]: r for r in json.loads(path.read_text())["rows"]} if path and path.exists() else {}
    rows = []
    for cfg in configs:
        if cfg.key in done and cfg in store:
            rows.append(done[cfg.key])
            continue
        result, net = fit(cfg, return_model=True)
        if cfg not in store:
            store.put(result)
        task_data = make_data(from_spec(cfg.task), cfg.data, seed=cfg.seed)
        row = {"key": cfg.key, "kind": cfg.model.kind, "n": cfg.data.n, "seed": cfg.seed,
               "train_loss": result.metrics["train_loss"], "test_loss": result.metrics["test_loss"],
               **analysis(net, task_data), "wall_time_s": result.wall_time_s}
        rows.append(row)
        done[cfg.key] = row
        if path is not None:
            atomic_write_text(path, json.dumps({"rows": list(done.values()), "provenance": provenance(1, "cpu")},
                                               indent=1) + "\n")
    return rows


def data_dir(root: Path | None = None) -> Path:
    """``<data root>/mlp_failure``: the chapter's precomputed JSON files."""
    return Path(root or default_root()) / "mlp_failure"


def two_sample(model: ModelConfig, seeds: list[int], n: int, steps: int, lr: float = 1e-3,
               data: dict | None = None, root: Path | None = None, name: str = "two_sample",
               recompute: bool = False, store: bool = True) -> dict:
    """:func:`two_sample_experiment`, computed once into ``<data>/mlp_failure/<name>.json`` by
    :func:`symlib.store.cached_result` (a config mismatch is an error unless ``recompute``)."""
    config = {"model": model.to_dict(), "seeds": list(seeds), "n": n, "steps": steps, "lr": lr,
              "data": data or {}}
    return cached_result(data_dir(root) / f"{name}.json", config,
                         lambda: two_sample_experiment(model, list(seeds), n, steps, lr, data), recompute, store)


def across_n_configs(models: list[ModelConfig], n: list[int], seeds: list[int],
                     train: TrainConfig) -> list[RunConfig]:
    """The chapter's sweep: same/different, each model × n × seed, paper test split."""
    return [run_config("same_different", m, train, DataConfig(n=k), seed=s)
            for m in models for k in n for s in seeds]


# ----------------------------------------------------------------------------- the chapter's figures


def two_sample_figure(rows: dict):
    """Empirical CDFs of the trained networks' outputs on one fresh ``αα`` and one fresh ``γδ``
    (one point per seed), one panel per model (at most three a row), one shared legend.  ``rows``:
    ``{model label: frame of} :func:`two_sample_experiment` rows`` (columns ``same``, ``diff``).
    Chapter *MLPs cannot reason with unseen symbols*, the two-sample test."""
    import pandas as pd
    import seaborn as sns
    outputs = pd.concat([pd.DataFrame({"model": label, "string": string, "output": pd.DataFrame(r)[column]})
                         for label, r in rows.items()
                         for string, column in (("αα (same)", "same"), ("γδ (different)", "diff"))], ignore_index=True)
    g = sns.displot(outputs, x="output", hue="string", col="model", col_wrap=min(3, len(rows)), kind="ecdf",
                    height=3.2, aspect=1.3, facet_kws={"sharex": False})
    g.set_titles("{col_name}")
    g.set_axis_labels("output F on the unseen string", "share of seeds")
    g.figure.suptitle("Output on one fresh unseen string per trained network (one point per seed)", y=1.04)
    return g.figure


def across_n_figure(across):
    """Test MSE and ``E[F²]`` on the unseen test strings against n, one colour per model, line style
    the quantity, band min–max over seeds, the trivial level 1 dotted.  ``across``: :func:`across_n`
    rows with a ``model`` column.  Chapter *MLPs cannot reason with unseen symbols*, test loss across n."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    long = pd.DataFrame(across).melt(id_vars=["model", "n", "seed"], value_vars=["test_loss", "mean_f2"],
                                     var_name="quantity", value_name="value")
    long["quantity"] = long["quantity"].map({"test_loss": "test MSE", "mean_f2": "E[F²] (test)"})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(long, x="n", y="value", hue="model", style="quantity", markers=True, errorbar=("pi", 100), ax=ax)
    ax.axhline(1.0, color="grey", lw=1, ls=":")
    ns = sorted(long["n"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set(xlabel="training samples n (= train alphabet size)", ylabel="",
           title="same/different, unseen test alphabet")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig

"""Probes of the next-token mechanism (brief §4.4): where gradient training moves a transformer with
a tied (un)embedding, why an unseen token's embedding is nearly orthogonal to all of it, and what
that does to the copy signal an unseen token receives.

* :func:`unseen_row_step` — one SGD step, exactly: an unseen row of the tied matrix ``E`` moves by
  ``−lr/N Σ_i p_iu ĥ_i`` (a combination of the final hidden states ``ĥ_i`` of the training strings).
* :func:`update_space` / :func:`projection_fraction` — the subspace of ``R^d`` that training wrote
  (row spaces of the first-layer updates, rows of ``ΔE``) and the squared projection
  ``‖P e‖² / ‖e‖²`` of an embedding onto it; for an independent isotropic ``e`` its mean is ``m/d``.
* :func:`margin_dilution` / :func:`dilution_grid` — the linear copier ``h = (W + R) e_α`` over a fixed
  tied embedding: ``W`` trained from 0 on ``n`` tokens, ``R`` a fixed random "initial network".  The
  copy signal (target-logit gain) an unseen token receives is about ``m/d`` of a training token's.
* :func:`target_margins` / :func:`unseen_rows` — on one trained model against its initialisation:
  target-logit gains and margins on training and unseen strings; how far Adam moved the unseen
  rows, in which direction, and the test error once they are reset to their initial values.
* :func:`span_probe` / :func:`span_grid` — all of it on trained models (``symlib.fit``), for the
  chapter's d × n grid.
* :func:`vo_copy_error` — the copy mechanism by construction: the VO path ``b_h A_h X`` hands the
  attended embedding itself to the tied unembedding, for any d; :func:`vo_gradient_at_init` — the
  gradient that makes ``b_h`` grow from its initial 0, string by string.
* :func:`dilution_figure`, :func:`projection_figure`, :func:`projection_vs_d_figure`,
  :func:`copy_signal_figure` — the chapter's figures, from the rows above.

Chapter: *Next-token prediction and the inverse scaling law*.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import positive_int
from .data import DataConfig, TaskData, make_data
from .models import ModelConfig, NextTokenTransformer, model_for
from .store import RunStore, cached_result, default_root
from .runs import RunConfig, TrainConfig, run_config
from .tasks import from_spec, get_task
from .training import fit

# ----------------------------------------------------------------------------- one SGD step, exactly


def final_hidden(model: NextTokenTransformer, x: torch.Tensor) -> torch.Tensor:
    """``ĥ = LN(h_k)``, the vector the tied unembedding reads: ``logits = ĥ Eᵀ``.  ``(B, d)``."""
    _check_next_token(model)
    got = {}
    handle = model.ln_f.register_forward_hook(lambda mod, inp, out: got.setdefault("h", out))
    try:
        model(x)
    finally:
        handle.remove()
    return got["h"]


def unseen_row_step(model: NextTokenTransformer, data: TaskData, lr: float = 0.1) -> dict[str, float]:
    """Take one full-batch SGD step on the training split (in place, in float64) and compare the change of every
    unseen row ``e_u`` (validation and test alphabets) with the prediction ``−lr/N Σ_i p_iu ĥ_i``.

    Returns the largest error of that prediction relative to the largest change, and the size of the
    change relative to ``‖e_u‖``."""
    model = model.double()  # float64: the change of an unseen row is tiny next to the row itself
    x, y = data.x["train"], data.y["train"]
    unseen = torch.arange(data.offsets["val"], data.vocab_size)
    e0 = model.tok_emb.weight.detach().clone()
    with torch.no_grad():
        h = final_hidden(model, x)                                   # (N, d)
        p = F.softmax(h @ e0.T, dim=-1)                              # (N, V)
        predicted = -lr * (p[:, unseen].T @ h) / len(x)              # (U, d)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    change = model.tok_emb.weight.detach()[unseen] - e0[unseen]
    return {"max_rel_error": float((change - predicted).abs().max() / change.abs().max()),
            "rel_change": float((change.norm(dim=1) / e0[unseen].norm(dim=1)).mean())}


# ----------------------------------------------------------------------------- update spaces


def update_space(init: NextTokenTransformer, trained: NextTokenTransformer, part: str,
                 energy: float = 0.99) -> torch.Tensor:
    """Orthonormal basis ``(d, m)`` of the subspace of ``R^d`` (the embedding space) that training
    changed, keeping the top singular directions that hold ``energy`` of the squared update.

    ``part``: ``"reads"`` — row spaces of ``ΔW_Q, ΔW_K, ΔW_V`` of the first block and of its MLP's
    first layer (the maps that read the residual stream at the first layer); ``"embedding"`` — the
    rows of ``ΔE``, the tied (un)embedding; ``"both"`` — the two stacked."""
    if part not in ("reads", "embedding", "both"):
        raise ValueError(f"part must be 'reads', 'embedding' or 'both'; got {part!r}")
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1]; got {energy!r}")
    rows = []
    if part in ("reads", "both"):
        for name in ("attn.w_q", "attn.w_k", "attn.w_v", "mlp.0"):
            w0 = init.blocks[0].get_submodule(name).weight
            w1 = trained.blocks[0].get_submodule(name).weight
            rows.append((w1 - w0).detach())                          # (out, d)
    if part in ("embedding", "both"):
        rows.append((trained.tok_emb.weight - init.tok_emb.weight).detach())  # (V, d)
    delta = torch.cat(rows).double()
    if not delta.abs().max() > 0:
        raise ValueError(f"the {part!r} parameters did not change between the two models")
    _, s, vh = torch.linalg.svd(delta, full_matrices=False)
    share = (s ** 2).cumsum(0) / (s ** 2).sum()
    m = int((share < energy - 1e-12).sum()) + 1
    return vh[:m].T.float()                                          # (d, m)


def projection_fraction(vectors: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``‖P v‖² / ‖v‖²`` for each row of ``vectors`` ``(N, d)``; ``basis`` ``(d, m)`` orthonormal."""
    return ((vectors @ basis) ** 2).sum(1) / (vectors ** 2).sum(1)


def span_probe(config: RunConfig, store: RunStore | None = None, energy: float = 0.99) -> dict:
    """Train ``config`` (a next-token run) with ``symlib.fit``, store its record (when ``store`` is
    given), and measure against the initialisation: the update spaces and the squared projections of
    training vs unseen (test-alphabet) embeddings; the copy signal and margins
    (:func:`target_margins`); the moves of the unseen rows and the test error once they are reset
    (:func:`unseen_rows`)."""
    task = from_spec(config.task)
    if task.kind != "next_token" or config.model.kind != "transformer":
        raise ValueError("span_probe needs a next-token task and the transformer")
    result, trained = fit(config, return_model=True)
    if store is not None:
        store.put(result)
    data = make_data(task, config.data, seed=config.seed)
    init = model_for(config.model, data, seed=config.seed)
    emb = trained.tok_emb.weight.detach()
    train_ids = sorted(data.tokens("train"))
    test_ids = list(range(data.offsets["test"], data.vocab_size))
    d = config.model.dim
    row = {"key": config.key, "d": d, "n": config.data.n, "seed": config.seed,
           "optimizer": config.train.optimizer, "vo_identity": config.model.vo_identity,
           "train_tokens": len(train_ids), "train_loss": result.metrics["train_loss"],
           "test_error": result.metrics["test_error"]}
    for part in ("reads", "embedding", "both"):
        basis = update_space(init, trained, part, energy)
        row[f"{part}_dim"] = basis.shape[1]
        row[f"{part}_unseen"] = float(projection_fraction(emb[test_ids], basis).mean())
        row[f"{part}_train"] = float(projection_fraction(emb[train_ids], basis).mean())
    trained.eval()
    margins = target_margins(init, trained, data)
    row.update({k: v for k, v in margins.items() if not k.endswith("_error")})
    moves = unseen_rows(init, trained, data)
    row.update({k: v for k, v in moves.items() if k != "test_error"})
    return row


# ----------------------------------------------------------------------------- margin dilution


def margin_dilution(d: int, n: int, unseen: int = 512, steps: int = 300, lr: float = 1.0,
                    optimizer: str = "gd", noise: float = 1.0, seed: int = 0) -> dict:
    """The linear copier of the chapter's margin-dilution section, trained and measured.

    A vocabulary of ``V = n + unseen`` tokens with a fixed tied embedding ``E`` (rows i.i.d.
    ``N(0, I_d)``); tokens ``0..n-1`` are the training tokens ``S``, the others are unseen.  The
    output for input ``α`` is ``h = (W + R) e_α`` and its logits are ``E h`` over the whole
    vocabulary.  ``R = noise · G / √d`` (``G`` standard Gaussian) is a fixed random map, the
    "initial network": its logits have spread ``noise · √d``, like those of an initialised
    next-token transformer (``‖ĥ‖ = √d``).  ``W`` starts at 0 and takes ``steps`` full-batch steps
    on the cross-entropy of copying every training token:

    * ``optimizer="gd"``: gradient descent with step ``lr · n / d^1.5`` — the step under which one
      update changes the training logits by a d-independent multiple of their initial spread ``√d``
      (the gradient is ``O(d / n)`` per string and moves logits by ``O(d² / n)`` per unit step).  Its
      updates have their row space in ``span{e_s : s ∈ S}``, so ``W e_u = W P_S e_u`` exactly.
    * ``optimizer="adam"``: Adam with learning rate ``lr`` (the transformers' optimiser; it does
      not keep the row space, and ``row_leak`` says by how much).

    Returned (means over the training tokens and over all unseen tokens): ``train_error``,
    ``test_error`` (argmax over the whole vocabulary); ``*_gain``, the copy signal — the target
    logit minus its value at ``W = 0``, i.e. ``⟨e_y, W e_y⟩``; ``*_margin``, target logit minus the
    best other logit; ``gain_ratio = test_gain / train_gain``; ``m_over_d = min(n, d) / d``;
    ``hebbian = n / (n + d + 1)``, the ratio for ``W ∝ Σ_s e_s e_sᵀ``; ``init_spread``, the standard
    deviation of the initial logits; ``w_norm``, ``√d ‖W‖_op``; ``row_leak``,
    ``‖W − W P_S‖_F / ‖W‖_F``.

    Chapter: *Next-token prediction and the inverse scaling law* (margin dilution).
    """
    for name, v in (("d", d), ("n", n), ("unseen", unseen), ("steps", steps)):
        positive_int(name, v)
    if optimizer not in ("gd", "adam"):
        raise ValueError(f"optimizer must be 'gd' or 'adam'; got {optimizer!r}")
    if not lr > 0 or not noise >= 0:
        raise ValueError(f"lr must be > 0 and noise >= 0; got lr={lr!r}, noise={noise!r}")
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n + unseen, d, generator=g)
    r = noise * torch.randn(d, d, generator=g) / math.sqrt(d)
    train_ids, test_ids = torch.arange(n), torch.arange(n, n + unseen)
    w = torch.zeros(d, d, requires_grad=True)
    opt = (torch.optim.SGD([w], lr=lr * n / d ** 1.5) if optimizer == "gd"
           else torch.optim.Adam([w], lr=lr))
    x = emb[train_ids]
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy((x @ (w + r).T) @ emb.T, train_ids).backward()
        opt.step()
    w = w.detach()
    out = {"d": d, "n": n, "unseen": unseen, "steps": steps, "optimizer": optimizer}
    with torch.no_grad():
        for split, ids in (("train", train_ids), ("test", test_ids)):
            e = emb[ids]
            logits = (e @ (w + r).T) @ emb.T
            target = logits.gather(1, ids[:, None])[:, 0]
            other = logits.scatter(1, ids[:, None], -math.inf).max(1).values
            out[f"{split}_error"] = float((logits.argmax(1) != ids).float().mean())
            out[f"{split}_gain"] = float(((e @ w.T) * e).sum(1).mean())
            out[f"{split}_margin"] = float((target - other).mean())
            if split == "train":
                out["init_spread"] = float(((e @ r.T) @ emb.T).std())
        q, _ = torch.linalg.qr(x.T)                                  # (d, min(n, d)) basis of span S
        out["gain_ratio"] = out["test_gain"] / out["train_gain"]
        out["m_over_d"] = min(n, d) / d
        out["hebbian"] = n / (n + d + 1)
        out["w_norm"] = float(torch.linalg.matrix_norm(w, 2)) * math.sqrt(d)
        out["row_leak"] = float((w - (w @ q) @ q.T).norm() / w.norm())
    return out


def dilution_grid(dims: list[int], ns: list[int], seeds: list[int], unseen: int = 512, steps: int = 300,
                  lr: float = 1.0, optimizer: str = "gd", root=None, recompute: bool = False,
                  store: bool = True, name: str = "dilution") -> dict:
    """:func:`margin_dilution` for every d × n × seed, computed once into
    ``<data>/next_token_theory/<name>.json`` by :func:`symlib.store.cached_result` (a config mismatch
    is an error unless ``recompute``; ``store=False`` writes no file).  ``{"rows": [...]}``."""
    config = {"dims": list(dims), "ns": list(ns), "seeds": list(seeds), "unseen": unseen, "steps": steps,
              "lr": lr, "optimizer": optimizer}

    def compute():
        return {"rows": [{**margin_dilution(d, n, unseen, steps, lr, optimizer, seed=s), "seed": s}
                         for d in dims for n in ns for s in seeds]}
    return cached_result(Path(root or default_root()) / "next_token_theory" / f"{name}.json", config, compute,
                         recompute, store)


def dilution_n_star(rows: list[dict], below: float = 0.1, stays: float = 0.2) -> dict[int, int | None]:
    """Per d: the smallest n whose seed-mean ``test_error`` is below ``below`` and stays below
    ``stays`` at every larger n of the grid (``None`` if no n qualifies) — the definition of n* used by
    the next-token experiments, applied to :func:`dilution_grid` rows."""
    by_d: dict[int, dict[int, list[float]]] = {}
    for r in rows:
        by_d.setdefault(r["d"], {}).setdefault(r["n"], []).append(r["test_error"])
    out = {}
    for d, curve in sorted(by_d.items()):
        ns = sorted(curve)
        err = [sum(curve[n]) / len(curve[n]) for n in ns]
        out[d] = next((n for i, n in enumerate(ns) if err[i] < below and all(e < stays for e in err[i:])), None)
    return out


# ----------------------------------------------------------------------------- trained models: margins, unseen rows


def unseen_ids(data: TaskData) -> torch.Tensor:
    """Ids of every token that occurs in no training string and is no training target."""
    seen = torch.zeros(data.vocab_size, dtype=torch.bool)
    seen[data.x["train"].flatten()] = True
    seen[data.y["train"]] = True
    return torch.nonzero(~seen)[:, 0]


@torch.no_grad()
def target_margins(init: NextTokenTransformer, trained: NextTokenTransformer, data: TaskData) -> dict[str, float]:
    """Copy signal of a trained next-token model on its training strings and on test strings
    (unseen tokens): ``{split}_gain``, the mean target logit of ``trained`` minus that of ``init``
    (its initialisation) on the same strings; ``{split}_margin``, the mean of target logit minus
    the best other logit (whole vocabulary); ``{split}_error``; and ``gain_ratio``
    ``= test_gain / train_gain`` (NaN when nothing was gained on the training strings)."""
    _check_next_token(init)
    _check_next_token(trained)
    out = {}
    for split in ("train", "test"):
        x, y = data.x[split], data.y[split]
        logits, logits0 = trained(x), init(x)
        target = logits.gather(1, y[:, None])[:, 0]
        other = logits.scatter(1, y[:, None], -math.inf).max(1).values
        out[f"{split}_gain"] = float((target - logits0.gather(1, y[:, None])[:, 0]).mean())
        out[f"{split}_margin"] = float((target - other).mean())
        out[f"{split}_error"] = float((logits.argmax(1) != y).float().mean())
    out["gain_ratio"] = out["test_gain"] / out["train_gain"] if out["train_gain"] else math.nan
    return out


@torch.no_grad()
def unseen_rows(init: NextTokenTransformer, trained: NextTokenTransformer, data: TaskData) -> dict[str, float]:
    """How training (Adam, in the chapter) moved the unseen rows ``e_u`` of the tied matrix
    (:func:`unseen_ids`), and what the move does.

    ``row_move``: mean of ``‖Δe_u‖ / ‖e_u(0)‖``; ``move_cosine``: mean cosine between the moves of
    two different unseen rows (1: all rows moved the same way); ``move_vs_hidden``: cosine of the
    mean move with ``−mean_i ĥ_i``, the mean final hidden state of the training strings (SGD moves
    an unseen row along ``−Σ_i p_iu ĥ_i``); ``move_in_hidden_span``: the share of the moves'
    squared norm inside ``span{ĥ_i}`` (trained model); ``test_error`` and ``reset_test_error``,
    the test error before and after every unseen row is put back to its initial value (both
    argmax over the whole vocabulary), ``reset_test_gain`` the copy signal after the reset."""
    _check_next_token(init)
    _check_next_token(trained)
    u = unseen_ids(data)
    e0, e1 = init.tok_emb.weight[u], trained.tok_emb.weight[u]
    delta = (e1 - e0).double()
    norms = delta.norm(dim=1)
    out = {"unseen_rows": len(u), "row_move": float((norms / e0.double().norm(dim=1)).mean())}
    if (norms > 0).sum() >= 2:
        unit = delta[norms > 0] / norms[norms > 0, None]
        cos = unit @ unit.T
        k = len(unit)
        out["move_cosine"] = float((cos.sum() - cos.diagonal().sum()) / (k * (k - 1)))
        h = final_hidden(trained, data.x["train"]).double()
        mean_move = delta.mean(0)
        out["move_vs_hidden"] = float(-(mean_move @ h.mean(0)) / (mean_move.norm() * h.mean(0).norm()))
        _, sv, vh = torch.linalg.svd(h, full_matrices=False)
        basis = vh[sv > sv[0] * 1e-6].T                               # (d, r) span of the ĥ_i
        out["move_in_hidden_span"] = float(((delta @ basis) ** 2).sum() / (delta ** 2).sum())
    else:
        out.update(move_cosine=math.nan, move_vs_hidden=math.nan, move_in_hidden_span=math.nan)
    x, y = data.x["test"], data.y["test"]
    out["test_error"] = float((trained(x).argmax(1) != y).float().mean())
    reset = copy.deepcopy(trained)
    reset.tok_emb.weight[u] = e0
    logits = reset(x)
    out["reset_test_error"] = float((logits.argmax(1) != y).float().mean())
    out["reset_test_gain"] = float((logits.gather(1, y[:, None])[:, 0] - init(x).gather(1, y[:, None])[:, 0]).mean())
    return out


# ----------------------------------------------------------------------------- copying by construction


def focus_attention_(model: NextTokenTransformer, data: TaskData, position: int, sharpness: float = 10.0) -> None:
    """Make head 0 of the first block attend, from the last position, to ``position`` whatever the
    tokens: the query reads the (fixed) last token, the key reads the positional embedding of
    ``position``.  Both use only positions and regular tokens — nothing token-specific to learn.
    Other heads are silenced (``b_h = 0``, zero value/output maps)."""
    _check_next_token(model)
    attn = model.blocks[0].attn
    dh = attn.dim_head
    with torch.no_grad():
        x = model.blocks[0].ln1(model.tok_emb(data.x["train"][:1]) + model.pos_emb)[0]  # (k, d)
        q_dir = x[-1] / x[-1].norm()                 # the last position's input is the same in every string
        k_dir = model.blocks[0].ln1(model.pos_emb[0, position])
        k_dir = k_dir / k_dir.norm()
        u = torch.zeros(attn.w_q.out_features)
        u[0] = 1.0
        scale = sharpness * math.sqrt(dh) / attn.scale / math.sqrt(model.pos_emb.shape[-1])
        attn.w_q.weight.copy_(torch.outer(u, q_dir))
        attn.w_k.weight.copy_(scale * torch.outer(u, k_dir))
        attn.w_v.weight[dh:] = 0.0


def vo_copy_error(d: int, b: float, seed: int = 0, n_test: int = 1000, test_alphabet: int = 1000,
                  sharpness: float = 10.0) -> float:
    """Copy error on unseen tokens of an *untrained* one-block next-token transformer with the VO
    identity, after two changes: head 0 attends to the position of ``α`` (:func:`focus_attention_`)
    and ``b_0 = b``.  Nothing token-specific is set: the embeddings are the random initialisation."""
    task = get_task("copy")
    cfg = ModelConfig(kind="transformer", dim=d, depth=1, heads=1, dim_head=32, mlp_dim=64, vo_identity=True)
    data = make_data(task, DataConfig(n=8, n_test=n_test, test_alphabet=test_alphabet, n_val=8, val_alphabet=8),
                     seed=seed)
    model = model_for(cfg, data, seed=seed)
    focus_attention_(model, data, position=2, sharpness=sharpness)
    with torch.no_grad():
        model.blocks[0].attn.b_h.fill_(b)
        out = model(data.x["test"])
    return float((out.argmax(-1) != data.y["test"]).float().mean())


def vo_gradient_at_init(d: int, n: int = 64, seed: int = 0, depth: int = 1, heads: int = 1, dim_head: int = 32,
                        mlp_dim: int = 64) -> dict[str, float]:
    """The gradient of the copy loss with respect to ``b_h`` at initialisation (``b_h = 0``), string by
    string, on ``n`` training strings of the copy task; the model is the chapter's probe model with
    the VO identity.  Returns ``descent`` — the mean of ``−∂L_i/∂b_h`` over strings and heads, divided
    by ``d`` (the chapter's estimate: ``≈ c · d``, ``c > 0``) — and ``positive_share``, the share of
    (string, head) pairs whose own gradient already says "increase ``b_h``"."""
    task = get_task("copy")
    cfg = ModelConfig(kind="transformer", dim=d, depth=depth, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim,
                      vo_identity=True)
    data = make_data(task, DataConfig(n=n, n_test=8, test_alphabet=8, n_val=8, val_alphabet=8), seed=seed)
    model = model_for(cfg, data, seed=seed)
    b = [blk.attn.b_h for blk in model.blocks]
    grads = []
    for x, y in zip(data.x["train"], data.y["train"]):
        g = torch.autograd.grad(F.cross_entropy(model(x[None]), y[None]), b)
        grads.append(-torch.cat(g))
    grads = torch.stack(grads)                                       # (n, depth · heads)
    return {"d": d, "descent": float(grads.mean()) / d, "positive_share": float((grads > 0).float().mean())}


def _check_next_token(model: nn.Module) -> None:
    if not isinstance(model, NextTokenTransformer):
        raise ValueError(f"expected a NextTokenTransformer (a next-token task); got {type(model).__name__}")


def span_grid(model: ModelConfig, train: TrainConfig, dims: list[int], ns: list[int], seeds: list[int],
              data: dict | None = None, root=None, runs: RunStore | None = None, recompute: bool = False,
              store: bool = True) -> dict:
    """:func:`span_probe` over the copy task for every d × n × seed, computed once into
    ``<data>/next_token_theory/span.json`` by :func:`symlib.store.cached_result` (a config mismatch
    is an error unless ``recompute``; ``store=False`` writes no file).  Each run's record also goes
    to the run store ``runs``."""
    config = {"model": model.to_dict(), "train": train.to_dict(), "dims": list(dims), "ns": list(ns),
              "seeds": list(seeds), "data": data or {}, "measures": ["spans", "margins", "unseen_rows"]}
    runs = runs or RunStore(root)

    def compute():
        rows = [span_probe(run_config("copy", replace(model, dim=d), train, DataConfig(n=n, **(data or {})), seed=s),
                           runs) for d in dims for n in ns for s in seeds]
        return {"rows": rows}
    return cached_result(Path(root or default_root()) / "next_token_theory" / "span.json", config, compute,
                         recompute, store)


# ----------------------------------------------------------------------------- the chapter's figures
#
# Each takes the chapter's frames (rows of :func:`dilution_grid` and :func:`span_grid`) and returns a
# matplotlib figure, handed to the page by :func:`symlib.plots.glue_figure`.  Dotted grey diagonals
# are the predictions of the argument (m/d, n/(n+d+1)).


def _d_labels(frame):
    """``frame`` with ``d`` as the label ``d = 16``, and those labels in numerical order."""
    ds = sorted(frame["d"].unique())
    return frame.assign(d=frame["d"].map("d = {}".format)), [f"d = {d}" for d in ds]


def _diagonal(ax) -> None:
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")


def dilution_figure(dil, dil_adam):
    """The linear copier (:func:`dilution_grid` rows).  Left: train and test copy error against n,
    colour d, line style the split (gradient descent).  Right: an unseen token's copy signal over a
    training token's against n/(n+d+1), gradient descent and the Adam control (``dil_adam``), with
    the prediction dotted.  One shared legend.  Chapter *Next-token prediction and the inverse
    scaling law*, margin dilution."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    from matplotlib.ticker import ScalarFormatter
    dil, dil_adam = pd.DataFrame(dil), pd.DataFrame(dil_adam)
    curves = dil.melt(id_vars=["d", "n", "seed"], value_vars=["test_error", "train_error"], var_name="split",
                      value_name="error").replace({"split": {"test_error": "test (unseen)", "train_error": "train"}})
    curves, left = _d_labels(curves)
    both, order = _d_labels(pd.concat([dil.assign(optimizer="gradient descent"), dil_adam.assign(optimizer="Adam (control)")]))
    palette = dict(zip(order, sns.color_palette("viridis", len(order))))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    sns.lineplot(curves, x="n", y="error", hue="d", hue_order=left, style="split", marker="o", palette=palette,
                 errorbar=None, ax=axes[0])
    axes[0].set_xscale("log", base=2)
    axes[0].xaxis.set_major_formatter(ScalarFormatter())
    axes[0].set(xlabel="training tokens n", ylabel="copy error (argmax over the vocabulary)",
                title="linear copier, gradient descent")
    sns.scatterplot(both, x="hebbian", y="gain_ratio", hue="d", hue_order=order, style="optimizer",
                    palette=palette, s=45, ax=axes[1])
    _diagonal(axes[1])
    axes[1].set(xlabel="n / (n + d + 1)   (≈ m/d for n ≪ d)", ylabel="unseen / training copy signal",
                title="copy signal of an unseen token")
    handles, labels = {}, []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = h
                labels.append(label)
        ax.get_legend().remove()
    fig.legend([handles[label] for label in labels], labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8)
    fig.tight_layout()
    return fig


def projection_figure(probe):
    """The lemma on trained models (:func:`span_grid` rows): the unseen embeddings' mean squared
    projection on the first-layer reads' update span against m/d, colour n, marker whether the
    model fits its training set (column ``fits``), the lemma's m/d dotted.  Chapter *Next-token
    prediction and the inverse scaling law*, measuring the mechanism."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    shown = probe.assign(n=probe["n"].map("n = {}".format),
                         fits=probe["fits"].map({True: "fits its training set", False: "does not fit"}))
    sns.scatterplot(shown, x="reads_m_over_d", y="reads_unseen", hue="n", style="fits",
                    style_order=["fits its training set", "does not fit"], palette="viridis", s=60, ax=ax)
    ax.get_legend().set_title(None)
    _diagonal(ax)
    ax.set(xlabel="m / d  (dimension of the update span of the first-layer reads / d)",
           ylabel="unseen embeddings: mean squared projection", title="Lemma: an independent span catches m/d")
    fig.tight_layout()
    return fig


def projection_vs_d_figure(probe):
    """Squared projections on the reads' update span against d — unseen and training embeddings,
    and the lemma's m/d (dashed) — one panel per n (at most three a row), band min–max over
    seeds, one shared legend.  Chapter *Next-token prediction and the inverse scaling law*."""
    import seaborn as sns
    long = probe.melt(id_vars=["d", "n", "seed"], value_vars=["reads_unseen", "reads_train", "reads_m_over_d"],
                      var_name="quantity", value_name="value")
    long["quantity"] = long["quantity"].map({"reads_unseen": "unseen embeddings", "reads_train": "training embeddings",
                                             "reads_m_over_d": "m / d (lemma)"})
    ns = sorted(long["n"].unique())
    g = sns.relplot(long, x="d", y="value", hue="quantity", style="quantity", col="n", col_order=ns,
                    col_wrap=min(3, len(ns)), kind="line", markers=True, dashes=[(1, 0), (1, 0), (3, 2)], height=3.2,
                    errorbar=("pi", 100))
    dims = sorted(long["d"].unique())
    for ax in g.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
    g.set(ylim=(0, 1.05))
    g.set_axis_labels("embedding dimension d", "squared projection on the update span")
    g.set_titles("n = {col_name}")
    return g.figure


def copy_signal_figure(fitted):
    """Trained copy transformers that fit their training set (:func:`span_grid` rows with
    ``predicted`` = n_tok/(n_tok+d+1) and ``reset_gain_ratio``): an unseen token's copy signal over
    a training token's against the prediction, as trained and with the unseen rows reset to their
    initial values, colour d, the prediction dotted.  Chapter *Next-token prediction and the inverse
    scaling law*, the copy signal an unseen token receives."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    sig = fitted.melt(id_vars=["d", "n", "seed", "predicted"], value_vars=["gain_ratio", "reset_gain_ratio"],
                      var_name="unseen rows", value_name="ratio")
    sig["unseen rows"] = sig["unseen rows"].map({"gain_ratio": "as trained (Adam)", "reset_gain_ratio": "reset to init"})
    sig, order = _d_labels(sig)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sns.scatterplot(sig, x="predicted", y="ratio", hue="d", hue_order=order, style="unseen rows", palette="viridis",
                    s=60, ax=ax)
    _diagonal(ax)
    ax.set(xlabel="n_tok / (n_tok + d + 1)   (margin dilution, ≈ m/d)", ylabel="unseen / training copy signal",
           title="trained copy transformers that fit their training set")
    fig.tight_layout()
    return fig

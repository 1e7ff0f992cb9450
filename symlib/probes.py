"""Probes of the next-token mechanism (brief §4.4): where gradient training moves a transformer with
a tied (un)embedding, and why an unseen token's embedding is nearly orthogonal to all of it.

* :func:`unseen_row_step` — one SGD step, exactly: an unseen row of the tied matrix ``E`` moves by
  ``−lr/N Σ_i p_iu ĥ_i`` (a combination of the final hidden states ``ĥ_i`` of the training strings).
* :func:`update_space` / :func:`projection_fraction` — the subspace of ``R^d`` that training wrote
  (row spaces of the first-layer updates, rows of ``ΔE``) and the squared projection
  ``‖P e‖² / ‖e‖²`` of an embedding onto it; for an independent isotropic ``e`` its mean is ``m/d``.
* :func:`span_probe` — both on one trained model (``symlib.fit``), for the chapter's d × n grid.
* :func:`vo_copy_error` / :func:`span_copy_error` — the copy mechanism by construction: the VO path
  ``b_h A_h X`` hands the attended embedding itself to the tied unembedding, for any d; a copier
  that only acts on the training span does not.

Chapter: *Next-token prediction and the inverse scaling law*.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import DataConfig, TaskData, make_data
from .models import ModelConfig, NextTokenTransformer, build_model
from .store import RunStore, cached_result, default_root
from .tasks import from_spec, get_task
from .training import RunConfig, TrainConfig, fit, run_config

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
    """Train ``config`` (a next-token run) with ``symlib.fit``, store its record, and measure the update
    spaces and the squared projections of training vs unseen (test-alphabet) embeddings."""
    task = from_spec(config.task)
    if task.kind != "next_token" or config.model.kind != "transformer":
        raise ValueError("span_probe needs a next-token task and the transformer")
    result, trained = fit(config, return_model=True)
    if store is not None:
        store.put(result)
    data = make_data(task, config.data, seed=config.seed)
    init = build_model(config.model, data.vocab_size, task.length, task.kind, seed=config.seed)
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
    return row


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
    model = build_model(cfg, data.vocab_size, task.length, task.kind, seed=seed)
    focus_attention_(model, data, position=2, sharpness=sharpness)
    with torch.no_grad():
        model.blocks[0].attn.b_h.fill_(b)
        out = model(data.x["test"])
    return float((out.argmax(-1) != data.y["test"]).float().mean())


def span_copy_error(d: int, n: int, vocab: int = 1000, n_test: int = 1000, seed: int = 0) -> float:
    """The ideal span-limited copier: ``logits = (P_S e_u) Eᵀ`` where ``P_S`` projects onto the span of
    ``n`` training embeddings (all rows i.i.d. ``N(0, I_d)``), against ``vocab`` candidates (the training
    tokens and unseen ones).  The error it makes on unseen ``u`` is what any copier that has learned
    only on the training span pays."""
    if n >= d:
        n = d  # the span is then the whole space: P_S = I
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(vocab, d, generator=g)                         # rows 0..n-1 are the training tokens
    q, _ = torch.linalg.qr(emb[:n].T)                                # (d, n) basis of the training span
    test = torch.arange(n, vocab)[torch.randint(0, vocab - n, (n_test,), generator=g)]
    logits = ((emb[test] @ q) @ q.T) @ emb.T                         # (n_test, vocab)
    return float((logits.argmax(-1) != test).float().mean())


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
              "seeds": list(seeds), "data": data or {}}
    runs = runs or RunStore(root)

    def compute():
        rows = [span_probe(run_config("copy", replace(model, dim=d), train, DataConfig(n=n, **(data or {})), seed=s),
                           runs) for d in dims for n in ns for s in seeds]
        return {"rows": rows}
    return cached_result(Path(root or default_root()) / "next_token_theory" / "span.json", config, compute,
                         recompute, store)

"""How identity-like is an attention head?  A z-score of the diagonal, against a random null.

Chapter: *Pretraining* (``pretrained``) — on pretrained heads, and on our language models before and
after training (``language_model``), next to the learned ``a_h`` and ``b_h``.

For a square matrix ``M`` (``d × d``; a head's ``W_Q W_Kᵀ`` or ``W_V W_O``, e.g. from
:meth:`symlib.attention.Attention.qk` / ``ov``):

    z(M) = (mean of diag M − mean of off-diag M) / (sd of off-diag M / √d)

— how many standard errors the diagonal's mean sits above what ``d`` entries drawn like the
off-diagonal ones would give.  ``M = I + noise`` has a large positive ``z``; a matrix with no
preferred diagonal has ``|z|`` of order 1.  The null distribution is that of ``z(A Bᵀ)`` for
independent Gaussian factors of the head's shapes (``d × dim_head`` each), so a low-rank product is
compared with low-rank products: :func:`identity_likeness` returns ``z`` with the null's mean, sd and
the empirical one-sided p-value.
"""

from __future__ import annotations

import torch

from .checks import positive_int


def diagonal_z(m: torch.Tensor) -> float:
    """``z`` of a square matrix ``(d, d)``, ``d >= 2``; ``nan`` if the off-diagonal is constant."""
    if m.dim() != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"diagonal_z takes a square matrix of side >= 2; got shape {tuple(m.shape)}")
    m = m.detach().double()
    d = m.shape[0]
    diag = m.diagonal()
    off = m[~torch.eye(d, dtype=torch.bool, device=m.device)]
    sd = off.std()
    if sd == 0:
        return float("nan")
    return float((diag.mean() - off.mean()) / (sd / d ** 0.5))


def null_z(d: int, rank: int, samples: int = 200, seed: int = 0) -> torch.Tensor:
    """``samples`` values of ``z(A Bᵀ)`` for independent N(0, 1) factors ``A, B`` of shape
    ``(d, rank)``: the null of a head whose two maps know nothing of each other."""
    for name, v in (("d", d), ("rank", rank), ("samples", samples)):
        positive_int(name, v)
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([diagonal_z(torch.randn(d, rank, generator=g, dtype=torch.float64)
                                    @ torch.randn(d, rank, generator=g, dtype=torch.float64).T)
                         for _ in range(samples)])


def identity_likeness(m: torch.Tensor, rank: int | None = None, samples: int = 200, seed: int = 0) -> dict:
    """``{"z", "null_mean", "null_sd", "p"}`` for a head matrix ``m`` of rank at most ``rank``
    (default: full).  ``p`` is the share of null draws with ``z`` at least ``m``'s (one-sided,
    with the +1 correction, so never 0)."""
    z = diagonal_z(m)
    null = null_z(m.shape[0], rank or m.shape[0], samples, seed)
    p = (1 + int((null >= z).sum())) / (1 + samples)
    return {"z": z, "null_mean": float(null.mean()), "null_sd": float(null.std()), "p": p}


@torch.no_grad()
def head_table(model: torch.nn.Module, samples: int = 200, seed: int = 0) -> list[dict]:
    """One row per (layer, head, matrix) of a model whose blocks hold ``attn`` modules with the
    per-head views ``qk(h)`` and ``ov(h)``: ``{"layer", "head", "matrix": "qk" | "ov", "z", ...}``.
    The null is drawn once per shape."""
    rows, nulls = [], {}
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        for h in range(attn.heads):
            for name in ("qk", "ov"):
                m = getattr(attn, name)(h)
                shape = (m.shape[0], min(attn.dim_head, m.shape[0]))
                if shape not in nulls:
                    nulls[shape] = null_z(*shape, samples=samples, seed=seed)
                z, null = diagonal_z(m), nulls[shape]
                rows.append({"layer": layer, "head": h, "matrix": name, "z": z,
                             "null_mean": float(null.mean()), "null_sd": float(null.std()),
                             "p": (1 + int((null >= z).sum())) / (1 + len(null))})
    return rows

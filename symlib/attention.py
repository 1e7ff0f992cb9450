"""Multi-head self-attention with the paper's two per-head modifications (brief §3, Section 5).

For head ``h`` with queries ``Q = X W_Q``, keys ``K = X W_K``, values ``V = X W_V``:

* plain::           A_h = softmax(logit_scale · Q Kᵀ / sqrt(dim_head))
* ``kq_identity``:  ``W_K W_Qᵀ + a_h I`` — the logits gain ``a_h · X Xᵀ`` (not scaled by
  ``dim_head^-1/2``), with ``a_h`` a trainable scalar initialised to 0.  ``X`` is the
  LayerNorm-ed input of the block.
* ``vo_identity``:  ``W_V W_Oᵀ + b_h I`` — the "attention-modulated skip connection": the block
  output gains ``Σ_h b_h · A_h X``, the attended input embeddings themselves; ``b_h`` init 0.

``identity_scale`` multiplies both identity terms (so ``a_h`` and ``b_h`` move that much faster
under Adam); the paper's value is unknown and 1 is our default [ours].  In the causal
(language-model) variant the diagonal of ``X Xᵀ`` is masked — no bonus for attending to oneself —
and the causal mask applies.  Chapters: *Regression experiments*, *Next-token prediction*.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        kq_identity: bool = False,
        vo_identity: bool = False,
        logit_scale: float = 1.0,
        identity_scale: float = 1.0,
        causal: bool = False,
    ):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.scale = logit_scale / math.sqrt(dim_head)
        self.identity_scale = identity_scale
        self.causal = causal
        self.w_q = nn.Linear(dim, inner, bias=False)
        self.w_k = nn.Linear(dim, inner, bias=False)
        self.w_v = nn.Linear(dim, inner, bias=False)
        self.w_o = nn.Linear(inner, dim, bias=False)
        self.a_h = nn.Parameter(torch.zeros(heads)) if kq_identity else None
        self.b_h = nn.Parameter(torch.zeros(heads)) if vo_identity else None
        self.last_attention: torch.Tensor | None = None  # (B, H, T, T), kept when record=True

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, T, H*dh) -> (B, H, T, dh)
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.dim_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, record: bool = False) -> torch.Tensor:
        # x: (B, T, dim), the LayerNorm-ed input
        b, n, _ = x.shape
        q, k, v = self._split(self.w_q(x)), self._split(self.w_k(x)), self._split(self.w_v(x))
        logits = (q @ k.transpose(-1, -2)) * self.scale  # (B, H, T, T)
        if self.a_h is not None:
            xx = x @ x.transpose(-1, -2)  # (B, T, T): the token-similarity matrix X Xᵀ
            if self.causal:
                xx = xx.masked_fill(torch.eye(n, dtype=torch.bool, device=x.device), 0.0)
            logits = logits + (self.identity_scale * self.a_h).view(1, -1, 1, 1) * xx.unsqueeze(1)
        if self.causal:
            future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
            logits = logits.masked_fill(future, float("-inf"))
        attn = F.softmax(logits, dim=-1)  # A_h: (B, H, T, T)
        if record:
            self.last_attention = attn.detach()
        out = self.w_o((attn @ v).transpose(1, 2).reshape(b, n, -1))  # (B, T, dim)
        if self.b_h is not None:
            mix = torch.einsum("h,bhij->bij", self.identity_scale * self.b_h, attn)  # Σ_h b_h A_h
            out = out + mix @ x
        return out

    @torch.no_grad()
    def mimetic_init_(self, alpha: float, beta: float, generator: torch.Generator | None = None) -> None:
        """Mimetic initialisation (Trockman & Kolter 2023): per head, ``W_Qᵀ W_K ≈ alpha·Z + beta·I``
        with ``Z ~ N(0, 1/dim)``, by a rank-``dim_head`` SVD factorisation."""
        dim = self.w_q.in_features
        r = min(self.dim_head, dim)
        for h in range(self.heads):
            z = torch.randn(dim, dim, generator=generator) / math.sqrt(dim)
            u, s, vh = torch.linalg.svd(alpha * z + beta * torch.eye(dim))
            rows = slice(h * self.dim_head, h * self.dim_head + r)
            self.w_q.weight[rows] = (u[:, :r] * s[:r].sqrt()).T
            self.w_k.weight[rows] = s[:r].sqrt()[:, None] * vh[:r]
            if r < self.dim_head:  # unused rows of a head wider than dim
                self.w_q.weight[h * self.dim_head + r:(h + 1) * self.dim_head] = 0
                self.w_k.weight[h * self.dim_head + r:(h + 1) * self.dim_head] = 0

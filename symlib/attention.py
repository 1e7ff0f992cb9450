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

**Looking inside.**  The attention pattern ``A_h`` passes through the identity submodule
``hook_pattern``: a forward hook on it sees ``(B, H, T, T)`` (:func:`attention_patterns` collects
those of a whole model).  Per head, ``W_Q(h)``, ``W_K(h)``, ``W_V(h)`` (``dim × dim_head``) and
``W_O(h)`` (``dim_head × dim``) are views of the weights, and

* ``qk(h) = logit_scale/√dim_head · W_Q,h W_K,hᵀ + identity_scale · a_h I``  (``dim × dim``): the
  logits of head ``h`` are ``X qk(h) Xᵀ`` (in the causal variant, off the diagonal: there the
  identity term is masked, and the future is ``-inf``);
* ``ov(h) = W_V,h W_O,h + identity_scale · b_h I``  (``dim × dim``): head ``h`` adds
  ``A_h X ov(h)`` to the block's output, and the output is the sum over heads.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import int_in


class Attention(nn.Module):
    """Multi-head self-attention on ``(B, T, dim)``; see the module's docstring for the switches,
    the scales and the per-head views."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        *,
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
        self.hook_pattern = nn.Identity()  # A_h (B, H, T, T) passes here: the place for a forward hook

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, T, H*dh) -> (B, H, T, dh)
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.dim_head).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        attn = self.hook_pattern(F.softmax(logits, dim=-1))  # A_h: (B, H, T, T)
        out = self.w_o((attn @ v).transpose(1, 2).reshape(b, n, -1))  # (B, T, dim)
        if self.b_h is not None:
            mix = torch.einsum("h,bhij->bij", self.identity_scale * self.b_h, attn)  # Σ_h b_h A_h
            out = out + mix @ x
        return out

    # ------------------------------------------------------------------------- per-head views

    def _rows(self, h: int) -> slice:
        int_in("head", h, 0, self.heads - 1)
        return slice(h * self.dim_head, (h + 1) * self.dim_head)

    def W_Q(self, h: int) -> torch.Tensor:
        """Head ``h``'s query map, ``(dim, dim_head)``: ``Q_h = X W_Q(h)``."""
        return self.w_q.weight[self._rows(h)].T

    def W_K(self, h: int) -> torch.Tensor:
        """Head ``h``'s key map, ``(dim, dim_head)``: ``K_h = X W_K(h)``."""
        return self.w_k.weight[self._rows(h)].T

    def W_V(self, h: int) -> torch.Tensor:
        """Head ``h``'s value map, ``(dim, dim_head)``: ``V_h = X W_V(h)``."""
        return self.w_v.weight[self._rows(h)].T

    def W_O(self, h: int) -> torch.Tensor:
        """Head ``h``'s block of the output map, ``(dim_head, dim)``: ``out = Σ_h A_h V_h W_O(h)``."""
        return self.w_o.weight[:, self._rows(h)].T

    def qk(self, h: int) -> torch.Tensor:
        """``(dim, dim)`` bilinear form of head ``h``'s logits, ``X qk(h) Xᵀ``, at the forward's scale:
        ``logit_scale/√dim_head · W_Q,h W_K,hᵀ`` plus ``identity_scale · a_h I`` with ``kq_identity``."""
        m = self.scale * (self.W_Q(h) @ self.W_K(h).T)
        if self.a_h is not None:
            m = m + self.identity_scale * self.a_h[h] * torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
        return m

    def ov(self, h: int) -> torch.Tensor:
        """``(dim, dim)`` map of head ``h``'s output, ``A_h X ov(h)``: ``W_V,h W_O,h`` plus
        ``identity_scale · b_h I`` with ``vo_identity``."""
        m = self.W_V(h) @ self.W_O(h)
        if self.b_h is not None:
            m = m + self.identity_scale * self.b_h[h] * torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
        return m

    @torch.no_grad()
    def mimetic_init_(self, alpha: float, beta: float, generator: torch.Generator | None = None,
                      form: str = "fresh") -> None:
        """Mimetic initialisation (Trockman & Kolter 2023): per head, ``W_Qᵀ W_K ≈ M`` (``dim × dim``,
        the bilinear form of the logits before ``logit_scale/√dim_head``) by a rank-``dim_head`` SVD
        factorisation, with

        * ``form="fresh"`` (ours):   ``M = alpha·Z + beta·I``, ``Z ~ N(0, 1/dim)`` drawn from ``generator``;
        * ``form="authors"``:        ``M = √alpha·W_Q W_Kᵀ + √beta·I`` from the head's current
          (default-initialised) weights — the construction of the authors' code (:mod:`symlib.fidelity`).
        """
        if form not in ("fresh", "authors"):
            raise ValueError(f"unknown mimetic form {form!r}; allowed: fresh, authors")
        dim = self.w_q.in_features
        r = min(self.dim_head, dim)
        for h in range(self.heads):
            if form == "fresh":
                m = alpha * (torch.randn(dim, dim, generator=generator) / math.sqrt(dim)) + beta * torch.eye(dim)
            else:
                m = math.sqrt(alpha) * (self.W_Q(h) @ self.W_K(h).T) + math.sqrt(beta) * torch.eye(dim)
            u, s, vh = torch.linalg.svd(m)                               # m = u diag(s) vh, (dim, dim)
            rows = slice(h * self.dim_head, h * self.dim_head + r)
            self.w_q.weight[rows] = (u[:, :r] * s[:r].sqrt()).T
            self.w_k.weight[rows] = s[:r].sqrt()[:, None] * vh[:r]
            if r < self.dim_head:  # unused rows of a head wider than dim
                self.w_q.weight[h * self.dim_head + r:(h + 1) * self.dim_head] = 0
                self.w_k.weight[h * self.dim_head + r:(h + 1) * self.dim_head] = 0


@contextmanager
def attention_patterns(model: nn.Module):
    """Collect the attention patterns of every :class:`Attention` in ``model`` during the forward
    passes inside the ``with`` block: yields a dict ``{module name: A (B, H, T, T)}`` (detached;
    the last forward pass wins), filled by forward hooks on ``hook_pattern`` that are removed on exit.

        with attention_patterns(model) as patterns:
            model(x)
        patterns["blocks.0.attn"]   # (B, H, T, T)
    """
    patterns: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            def keep(mod, inp, out, name=name):
                patterns[name] = out.detach()
            handles.append(module.hook_pattern.register_forward_hook(keep))
    try:
        yield patterns
    finally:
        for handle in handles:
            handle.remove()

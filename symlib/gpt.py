"""A GPT-2-layout language model on :class:`symlib.attention.Attention`, and GPT-2 weights for it.

Chapters: *Language models* (``language_model``) and *Pretraining* (``pretrained``).

The layout is GPT-2's: learned token and position embeddings, ``depth`` pre-LN blocks
``x = x + Attn(LN(x)); x = x + MLP(LN(x))`` with a GELU (tanh) MLP of width ``4·dim``, a final
LayerNorm, and the unembedding tied to the token embedding.  Attention is causal and takes the
paper's two switches (brief §3):

* ``kq_identity``: logits gain ``a_h · X Xᵀ`` on the first LayerNorm's output, its diagonal zeroed
  (no bonus for attending to oneself), then the causal mask;
* ``vo_identity``: the block output gains ``Σ_h b_h A_h X``.

``a_h`` and ``b_h`` start at 0 and draw no random numbers, so a modified model and the baseline of
the same seed start *identical* (a test checks it): the chapter compares them in pairs.
Initialisation is GPT-2's: weights N(0, 0.02), the two residual projections N(0, 0.02/√(2·depth)),
biases and ``a_h``, ``b_h`` zero.

:func:`load_pretrained` maps a Hugging Face GPT-2 (``"hf:gpt2"``, or ``"hf:<local folder>"``) into
this model — its logits equal the original's to float precision.  ``transformers`` is imported
only there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Attention
from .checks import int_in, positive_int

VARIANTS = {"baseline": (False, False), "kq": (True, False), "vo": (False, True), "kq_vo": (True, True)}


@dataclass(frozen=True)
class GPTConfig:
    """The architecture; defaults are the ``language_model`` chapter's [ours]: d 256, 4 layers,
    4 heads × 64, context 256, dropout 0, vocabulary 8192 (our BPE)."""

    vocab_size: int = 8192
    context: int = 256        # learned positions: the longest input
    dim: int = 256            # d
    depth: int = 4            # blocks
    heads: int = 4
    dim_head: int = 64
    mlp_ratio: int = 4        # MLP width = mlp_ratio · dim
    dropout: float = 0.0      # GPT-2's embedding and residual dropout (symlib.attention has no attention dropout)
    bias: bool = True         # biases in every linear layer (GPT-2 has them)
    kq_identity: bool = False  # logits += a_h · X Xᵀ (diagonal masked)   (W_K W_Qᵀ + a_h I)
    vo_identity: bool = False  # output += Σ_h b_h A_h X                   (W_V W_Oᵀ + b_h I)
    identity_scale: float = 1.0
    gelu: str = "tanh"        # GPT-2's "gelu_new"; "none" is the exact erf GELU
    ln_eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "context", "dim", "depth", "heads", "dim_head", "mlp_ratio"):
            positive_int(f"GPT {name}", getattr(self, name))
        for name in ("bias", "kq_identity", "vo_identity"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPT {name} must be True or False; got {getattr(self, name)!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"GPT dropout must be in [0, 1); got {self.dropout!r}")
        for name in ("identity_scale", "ln_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"GPT {name} must be a finite positive number; got {v!r}")
        if self.gelu not in ("tanh", "none"):
            raise ValueError(f"GPT gelu must be 'tanh' or 'none'; got {self.gelu!r}")

    @property
    def variant(self) -> str:
        """``baseline``, ``kq``, ``vo`` or ``kq_vo``."""
        return next(k for k, v in VARIANTS.items() if v == (self.kq_identity, self.vo_identity))

    def with_variant(self, variant: str) -> "GPTConfig":
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        kq, vo = VARIANTS[variant]
        return type(self)(**{**asdict(self), "kq_identity": kq, "vo_identity": vo})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        return config_from_dict(cls, d)


def config_from_dict(cls, d: dict):
    """``cls(**d)`` for a config dataclass, an unknown field being an error that lists the known."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {sorted(unknown)}; allowed: "
                         f"{sorted(f.name for f in fields(cls))}")
    return cls(**d)


class GPTBlock(nn.Module):
    """``x = x + drop(Attn(LN(x))); x = x + drop(MLP(LN(x)))``, causal attention."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps, bias=cfg.bias)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dim_head, kq_identity=cfg.kq_identity,
                              vo_identity=cfg.vo_identity, identity_scale=cfg.identity_scale, causal=True)
        if cfg.bias:  # GPT-2's attention biases: the same four projections, with a bias each.
            # Swapped in after construction, not passed to Attention: building them there would
            # draw fewer random numbers before reset_parameters, and change every stored run's init.
            inner = cfg.heads * cfg.dim_head
            self.attn.w_q = nn.Linear(cfg.dim, inner)
            self.attn.w_k = nn.Linear(cfg.dim, inner)
            self.attn.w_v = nn.Linear(cfg.dim, inner)
            self.attn.w_o = nn.Linear(inner, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps, bias=cfg.bias)
        width = cfg.mlp_ratio * cfg.dim
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, width, bias=cfg.bias), nn.GELU(approximate=cfg.gelu),
                                 nn.Linear(width, cfg.dim, bias=cfg.bias))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, dim) -> (B, T, dim)
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    """``(B, T)`` token ids, ``T <= context`` -> ``(B, T, vocab)`` next-token logits."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_emb = nn.Embedding(cfg.context, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(GPTBlock(cfg) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps, bias=cfg.bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's initialisation, parameter by parameter in ``named_parameters`` order (the same
        order, and the same random draws, for every variant: ``a_h`` and ``b_h`` draw none)."""
        residual_std = 0.02 / math.sqrt(2 * self.cfg.depth)
        for name, p in self.named_parameters():
            if name.endswith(("attn.a_h", "attn.b_h")) or name.endswith(".bias"):
                p.zero_()
            elif ".ln" in name or name.startswith("ln_f"):
                p.fill_(1.0)
            elif name.endswith(("attn.w_o.weight", "mlp.2.weight")):
                p.normal_(0.0, residual_std)
            else:
                p.normal_(0.0, 0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        if t > self.cfg.context:
            raise ValueError(f"input of {t} tokens is longer than the context ({self.cfg.context})")
        pos = torch.arange(t, device=idx.device)
        h = self.drop(self.tok_emb(idx) + self.pos_emb(pos))      # (B, T, dim)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h) @ self.tok_emb.weight.T               # (B, T, vocab), tied unembedding

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats) of ``(B, T)`` inputs against ``(B, T)`` targets."""
        logits = self(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long())

    def identity_coefficients(self) -> dict[str, list[list[float]]]:
        """``{"a_h": [[per head] per layer], "b_h": ...}`` for the switches that are on."""
        out = {}
        for name in ("a_h", "b_h"):
            vals = [getattr(b.attn, name) for b in self.blocks]
            if vals and vals[0] is not None:
                out[name] = [v.detach().float().cpu().tolist() for v in vals]
        return out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_gpt(cfg: GPTConfig, seed: int) -> GPT:
    """``GPT(cfg)`` initialised from ``seed`` alone (a private generator state; the global one is
    restored)."""
    int_in("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(cfg)


# ----------------------------------------------------------------------------- GPT-2 weights


def hf_gpt2_config(hf) -> GPTConfig:
    """Our :class:`GPTConfig` of a ``transformers.GPT2Config``; features of GPT-2 we do not model
    are refused, not ignored."""
    act = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}.get(hf.activation_function)
    if act is None:
        raise ValueError(f"unsupported GPT-2 activation {hf.activation_function!r}; allowed: gelu_new, gelu")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if getattr(hf, flag, False):
            raise ValueError(f"GPT-2 option {flag}=True is not supported")
    if not getattr(hf, "scale_attn_weights", True):
        raise ValueError("GPT-2 option scale_attn_weights=False is not supported")
    if hf.n_embd % hf.n_head:
        raise ValueError(f"n_embd {hf.n_embd} is not a multiple of n_head {hf.n_head}")
    inner = hf.n_inner or 4 * hf.n_embd
    if inner % hf.n_embd:
        raise ValueError(f"MLP width {inner} is not a multiple of n_embd {hf.n_embd}")
    return GPTConfig(vocab_size=hf.vocab_size, context=hf.n_positions, dim=hf.n_embd, depth=hf.n_layer,
                     heads=hf.n_head, dim_head=hf.n_embd // hf.n_head, mlp_ratio=inner // hf.n_embd,
                     dropout=0.0, bias=True, gelu=act, ln_eps=hf.layer_norm_epsilon)


@torch.no_grad()
def from_hf_gpt2(hf_model, kq_identity: bool = False, vo_identity: bool = False) -> GPT:
    """Our :class:`GPT` holding the weights of a ``transformers`` ``GPT2LMHeadModel`` (or
    ``GPT2Model``).  GPT-2 stores its linear maps as ``Conv1D`` ``(in, out)``; ``c_attn`` packs
    ``[W_Q | W_K | W_V]``.  With a switch on, ``a_h`` (``b_h``) start at 0: the same function."""
    cfg = hf_gpt2_config(hf_model.config)
    cfg = GPTConfig(**{**cfg.to_dict(), "kq_identity": kq_identity, "vo_identity": vo_identity})
    sd = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items()}
    model = build_gpt(cfg, seed=0)
    d = cfg.dim

    def put(param: torch.Tensor, value: torch.Tensor, name: str):
        if param.shape != value.shape:
            raise ValueError(f"GPT-2 weight {name} has shape {tuple(value.shape)}, expected {tuple(param.shape)}")
        param.copy_(value)

    put(model.tok_emb.weight, sd["wte.weight"], "wte.weight")
    put(model.pos_emb.weight, sd["wpe.weight"], "wpe.weight")
    for i, blk in enumerate(model.blocks):
        p = f"h.{i}."
        w, b = sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"]      # (d, 3d), (3d,)
        for j, lin in enumerate((blk.attn.w_q, blk.attn.w_k, blk.attn.w_v)):
            put(lin.weight, w[:, j * d:(j + 1) * d].T, p + "attn.c_attn.weight")
            put(lin.bias, b[j * d:(j + 1) * d], p + "attn.c_attn.bias")
        put(blk.attn.w_o.weight, sd[p + "attn.c_proj.weight"].T, p + "attn.c_proj.weight")
        put(blk.attn.w_o.bias, sd[p + "attn.c_proj.bias"], p + "attn.c_proj.bias")
        put(blk.mlp[0].weight, sd[p + "mlp.c_fc.weight"].T, p + "mlp.c_fc.weight")
        put(blk.mlp[0].bias, sd[p + "mlp.c_fc.bias"], p + "mlp.c_fc.bias")
        put(blk.mlp[2].weight, sd[p + "mlp.c_proj.weight"].T, p + "mlp.c_proj.weight")
        put(blk.mlp[2].bias, sd[p + "mlp.c_proj.bias"], p + "mlp.c_proj.bias")
        for ours, theirs in ((blk.ln1, "ln_1"), (blk.ln2, "ln_2")):
            put(ours.weight, sd[p + theirs + ".weight"], p + theirs + ".weight")
            put(ours.bias, sd[p + theirs + ".bias"], p + theirs + ".bias")
    put(model.ln_f.weight, sd["ln_f.weight"], "ln_f.weight")
    put(model.ln_f.bias, sd["ln_f.bias"], "ln_f.bias")
    return model.eval()


def load_pretrained(spec: str, **switches) -> GPT:
    """A pretrained model by name.  ``"hf:gpt2"`` (or ``"hf:<hub id or local folder>"``):
    GPT-2 weights through ``transformers`` (the hub, its cache, or a folder written by
    ``save_pretrained``).  ``switches``: ``kq_identity`` / ``vo_identity`` (starting at 0)."""
    if not isinstance(spec, str) or not spec.startswith("hf:") or len(spec) == 3:
        raise ValueError(f"unknown pretrained model {spec!r}; allowed: 'hf:gpt2' or 'hf:<hub id or folder>'")
    try:
        from transformers import GPT2LMHeadModel
    except ImportError:
        raise ValueError(f"loading {spec} needs the `transformers` package, which is not installed "
                         "(pip install -r requirements.txt)") from None
    try:
        hf = GPT2LMHeadModel.from_pretrained(spec[3:])
    except OSError as e:
        raise ValueError(f"cannot load {spec}: {e}".splitlines()[0] + " (offline? give a local folder)") from None
    return from_hf_gpt2(hf, **switches)

"""The architectures of the paper (brief §3), built from one :class:`ModelConfig`.

* ``transformer``   ViT-style pre-LN transformer, CLS token appended at the end, read out at CLS;
                    with the switches ``kq_identity`` / ``vo_identity`` (:mod:`symlib.attention`).
                    For a next-token task it becomes :class:`NextTokenTransformer` (tied
                    embedding, causal, read out at the final position).
* ``mlp``           MLP on the flattened one-hot input (``depth`` linear layers, ReLU).
* ``mlp_xxt``       the same MLP with the flattened k×k equality matrix ``1(x_i = x_j)``
                    concatenated to its input.
* ``rnn``, ``lstm`` Elman RNN / LSTM over token embeddings, read out at the last step.

Three options build a component the way the authors' code does (``eboix/relational-reasoning``,
``experiments/models.py``; the facts are in :mod:`symlib.fidelity`), each off by default so that
every stored run keeps its key: ``rnn_cell="relu_elman"``, ``lstm_init_state="normal"`` and
``mimetic_form="authors"``.  Chapter *Regression experiments*, section *Why our curves differ
from the paper's*.

All models map token ids ``(B, k)`` to ``(B,)`` for regression, ``(B, classes)`` for
classification, ``(B, vocab)`` for next-token prediction.  Chapters: every experiment chapter;
*MLPs cannot reason with unseen symbols* for the MLP's first layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Attention
from .checks import positive_int

MODEL_KINDS = ("transformer", "mlp", "mlp_xxt", "rnn", "lstm")
RNN_CELLS = ("tanh", "relu_elman")      # nn.RNN with tanh (ours) | the authors' ReLU Elman cell
LSTM_INIT_STATES = ("zeros", "normal")  # (h0, c0) = 0 (ours) | N(0, 1), drawn at every forward (authors')
MIMETIC_FORMS = ("fresh", "authors")    # alpha·Z + beta·I, fresh Z (ours) | √alpha·W_Q W_Kᵀ + √beta·I (authors')
DEFAULT_DEPTH = {"transformer": 2, "mlp": 3, "mlp_xxt": 3, "rnn": 1, "lstm": 1}


def without_added_defaults(d: dict, added: dict) -> dict:
    """``d`` without the fields of ``added`` that hold their default: a field added to a config
    after runs were stored must not change the stored runs' hashes."""
    return {k: v for k, v in d.items() if not (k in added and v == added[k])}


@dataclass(frozen=True)
class ModelConfig:
    """Every architectural choice of a run; part of its config hash.

    Widths are ours (the paper's are unknown): ``dim`` 128, 4 heads × 64, MLP width 256.
    ``depth=None`` means the kind's default (transformer 2 blocks, MLP 3 linear layers,
    RNN/LSTM 1 layer) and is filled in, so stored configs are explicit.
    """

    kind: str = "transformer"
    dim: int = 128            # transformer / RNN embedding dimension (d)
    depth: int | None = None  # transformer blocks, MLP linear layers, recurrent layers
    heads: int = 4
    dim_head: int = 64
    mlp_dim: int = 256        # transformer MLP width
    hidden: int = 256         # MLP / RNN hidden width
    kq_identity: bool = False  # logits += a_h · X Xᵀ      (W_K W_Qᵀ + a_h I)
    vo_identity: bool = False  # output += Σ_h b_h A_h X   (W_V W_Oᵀ + b_h I)
    identity_scale: float = 1.0  # multiplier of both identity terms
    logit_scale: float = 1.0     # multiplier of Q Kᵀ / sqrt(dim_head)
    init_scale: float = 1.0      # multiplier of every weight at initialisation
    mimetic: tuple[float, float] | None = None  # (alpha, beta): W_Qᵀ W_K ≈ alpha Z + beta I
    train_last_layer_only: bool = False  # random-features regime: only the readout trains
    readout_scale: float = 1.0   # next-token: logits = readout_scale · LN(h_k) Eᵀ (a control; the paper's is 1)
    rnn_cell: str = "tanh"       # RNN_CELLS; "relu_elman" needs hidden == dim and depth 1
    lstm_init_state: str = "zeros"  # LSTM_INIT_STATES
    mimetic_form: str = "fresh"  # MIMETIC_FORMS, with mimetic set

    # Fields added after runs were stored: left out of to_dict (and the hash) at their default.
    ADDED_FIELDS = {"readout_scale": 1.0, "rnn_cell": "tanh", "lstm_init_state": "zeros", "mimetic_form": "fresh"}

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; allowed: {', '.join(MODEL_KINDS)}")
        if self.depth is None:
            object.__setattr__(self, "depth", DEFAULT_DEPTH[self.kind])
        for name in ("dim", "depth", "heads", "dim_head", "mlp_dim", "hidden"):
            positive_int(f"model {name}", getattr(self, name))
        from math import isfinite

        def number(v) -> bool:
            return not isinstance(v, bool) and isinstance(v, (int, float)) and isfinite(v)

        for name in ("identity_scale", "logit_scale", "init_scale", "readout_scale"):
            v = getattr(self, name)
            if not number(v) or not v > 0:
                raise ValueError(f"model {name} must be a finite positive number; got {v!r}")
        for name in ("kq_identity", "vo_identity", "train_last_layer_only"):  # "no" would be truthy
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model {name} must be True or False; got {getattr(self, name)!r}")
        if self.mimetic is not None:
            if not (isinstance(self.mimetic, (list, tuple)) and len(self.mimetic) == 2 and all(map(number, self.mimetic))):
                raise ValueError(f"mimetic must be a pair of finite numbers (alpha, beta); got {self.mimetic!r}")
            object.__setattr__(self, "mimetic", tuple(float(v) for v in self.mimetic))
        if self.kind != "transformer" and (self.kq_identity or self.vo_identity or self.mimetic):
            raise ValueError(f"kq_identity, vo_identity and mimetic apply to the transformer only, not {self.kind!r}")
        for name, allowed, kind in (("rnn_cell", RNN_CELLS, "rnn"), ("lstm_init_state", LSTM_INIT_STATES, "lstm"),
                                    ("mimetic_form", MIMETIC_FORMS, "transformer")):
            v = getattr(self, name)
            if v not in allowed:
                raise ValueError(f"unknown model {name} {v!r}; allowed: {', '.join(allowed)}")
            if v != allowed[0] and self.kind != kind:
                raise ValueError(f"model {name}={v!r} applies to kind {kind!r} only, not {self.kind!r}")
        if self.mimetic_form != "fresh" and (self.mimetic is None or min(self.mimetic) < 0):
            raise ValueError(f"mimetic_form={self.mimetic_form!r} needs mimetic=(alpha, beta) with alpha, beta >= 0 "
                             f"(it uses √alpha and √beta); got mimetic={self.mimetic!r}")
        if self.rnn_cell == "relu_elman" and (self.hidden != self.dim or self.depth != 1):
            raise ValueError(f"the authors' ReLU Elman cell has one layer whose hidden width is the embedding width: "
                             f"set hidden = dim and depth = 1 (got dim {self.dim}, hidden {self.hidden}, depth {self.depth})")

    def to_dict(self) -> dict:
        d = without_added_defaults(asdict(self), self.ADDED_FIELDS)
        d["mimetic"] = list(self.mimetic) if self.mimetic else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model option(s) {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)


MODEL_NAMES = {"transformer": "transformer", "mlp": "MLP", "mlp_xxt": "MLP + XXᵀ", "rnn": "RNN", "lstm": "LSTM"}


def model_label(model: ModelConfig | dict) -> str:
    """The one name of a model in frames, plots, chapters and :data:`symlib.experiments.MODELS`:
    ``transformer + KQ``, ``MLP``, ``LSTM`` …  ``model``: a :class:`ModelConfig` or its dict."""
    if isinstance(model, ModelConfig):
        model = model.to_dict()
    base = MODEL_NAMES[model["kind"]]
    extras = [name for flag, name in (("kq_identity", "KQ"), ("vo_identity", "VO")) if model.get(flag)]
    if extras:
        base += " + " + " & ".join(extras)
    if extras and model.get("identity_scale", 1.0) != 1.0:
        base += f" (identity ×{model['identity_scale']:g})"
    if model.get("mimetic"):
        base += " (mimetic, authors' form)" if model.get("mimetic_form", "fresh") == "authors" else " (mimetic)"
    if model.get("rnn_cell", "tanh") == "relu_elman":
        base += " (ReLU Elman)"
    if model.get("lstm_init_state", "zeros") == "normal":
        base += " (random initial state)"
    if model.get("readout_scale", 1.0) != 1.0:
        base += f" (logits ×{model['readout_scale']:.3g})"
    return base


# ----------------------------------------------------------------------------- transformer


class Block(nn.Module):
    """``x = x + Attn(LN(x)); x = x + MLP(LN(x))`` (pre-LN)."""

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dim_head, kq_identity=cfg.kq_identity,
                              vo_identity=cfg.vo_identity, logit_scale=cfg.logit_scale,
                              identity_scale=cfg.identity_scale, causal=causal)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_dim), nn.GELU(), nn.Linear(cfg.mlp_dim, cfg.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """ViT-style transformer for regression / classification: ``(B, k)`` ids -> ``(B, out)``."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, length: int, out_dim: int):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, cfg.dim)                 # N(0, 1) init
        self.pos_emb = nn.Parameter(torch.randn(1, length + 1, cfg.dim))  # +1: the CLS slot
        self.cls = nn.Parameter(torch.randn(1, 1, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg, causal=False) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.dim, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, out_dim)
        self.out_dim = out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the readout: ``(B, k)`` ids -> ``(B, dim)``, the final LN at CLS."""
        h = self.tok_emb(x)                                              # (B, k, dim)
        h = torch.cat([h, self.cls.expand(h.shape[0], -1, -1)], dim=1)   # CLS at the end
        h = h + self.pos_emb
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h[:, -1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))                        # (B, out_dim)
        return out.squeeze(-1) if self.out_dim == 1 else out

    def readout(self) -> nn.Module:
        return self.head


class NextTokenTransformer(nn.Module):
    """Same body, causal, read out at the final position with the tied unembedding:
    ``logits = LN(h_k) Eᵀ`` over the whole vocabulary, ``(B, k)`` -> ``(B, vocab)``.

    ``cfg.readout_scale`` multiplies the logits: with N(0, 1) rows and ``‖LN(h)‖ = √d`` their spread
    at initialisation is ``√d``; ``1/√d`` makes it 1 — the control of *Next-token experiments*."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, length: int):
        super().__init__()
        self.readout_scale = cfg.readout_scale
        self.tok_emb = nn.Embedding(vocab_size, cfg.dim)
        self.pos_emb = nn.Parameter(torch.randn(1, length, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg, causal=True) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.dim, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok_emb(x) + self.pos_emb
        for block in self.blocks:
            h = block(h)
        logits = self.ln_f(h[:, -1]) @ self.tok_emb.weight.T             # (B, vocab)
        return logits if self.readout_scale == 1.0 else self.readout_scale * logits

    def readout(self) -> nn.Module:
        return self.tok_emb  # tied: the last layer is the (un)embedding


# ----------------------------------------------------------------------------- baselines


class OneHotLinear(nn.Module):
    """``Linear(k·vocab -> out)`` on the flattened one-hot input, computed as a gather.

    ``weight[p * vocab + t]`` is the column of (position p, token t).  A column whose token never
    occurs in training gets exactly zero gradient — the mechanism of the MLP-failure theorem.
    Initialised like ``nn.Linear`` with ``fan_in = k·vocab + extra_fan_in``.
    """

    def __init__(self, length: int, vocab_size: int, out: int, extra_fan_in: int = 0):
        super().__init__()
        self.vocab_size = vocab_size
        bound = (length * vocab_size + extra_fan_in) ** -0.5
        self.weight = nn.Parameter(torch.empty(length * vocab_size, out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out).uniform_(-bound, bound))
        self.register_buffer("shift", torch.arange(length) * vocab_size, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, k) -> (B, out)
        return F.embedding(x + self.shift, self.weight).sum(1) + self.bias


class MLP(nn.Module):
    """``depth`` linear layers with ReLU on the one-hot input; ``xxt=True`` concatenates the
    flattened equality matrix ``1(x_i = x_j)`` (k² features) to the input."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, length: int, out_dim: int, xxt: bool = False):
        super().__init__()
        h = cfg.hidden
        extra = length * length if xxt else 0
        self.first = OneHotLinear(length, vocab_size, h if cfg.depth > 1 else out_dim, extra)
        self.eq = None
        if xxt:
            self.eq = nn.Linear(extra, self.first.bias.shape[0], bias=False)
            bound = (length * vocab_size + extra) ** -0.5
            nn.init.uniform_(self.eq.weight, -bound, bound)
        layers = []
        for i in range(1, cfg.depth):
            layers += [nn.ReLU(), nn.Linear(h, h if i < cfg.depth - 1 else out_dim)]
        self.rest = nn.Sequential(*layers)
        self.out_dim = out_dim

    def _first(self, x: torch.Tensor) -> torch.Tensor:
        z = self.first(x)
        if self.eq is not None:
            eq = (x.unsqueeze(2) == x.unsqueeze(1)).flatten(1).float()  # (B, k²)
            z = z + self.eq(eq)
        return z

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the readout (``depth >= 2``): ``(B, k)`` ids -> ``(B, hidden)``."""
        if not len(self.rest):
            raise ValueError("a depth-1 MLP is its own readout; it has no features")
        return self.rest[:-1](self._first(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rest(self._first(x))
        return out.squeeze(-1) if self.out_dim == 1 else out

    def readout(self) -> nn.Module:
        return self.rest[-1] if len(self.rest) else self.first


class ReluElman(nn.Module):
    """The authors' Elman cell (``rnn_cell="relu_elman"``): ``h_t = ReLU(W [e_t; h_{t-1}] + b)``, one
    ``Linear(2·dim -> dim)`` on the concatenation (so one bias, and PyTorch's default init with
    fan-in 2·dim), ``h_0 = 0``, hidden width = embedding width.  Same call as ``nn.RNN``:
    ``(B, k, dim) -> ((B, k, dim) states, (B, dim) last state)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.i2h = nn.Linear(2 * dim, dim)

    def forward(self, e: torch.Tensor):
        h = e.new_zeros(e.shape[0], self.i2h.out_features)             # (B, dim)
        states = []
        for t in range(e.shape[1]):
            h = F.relu(self.i2h(torch.cat([e[:, t], h], dim=-1)))      # (B, dim)
            states.append(h)
        return torch.stack(states, dim=1), h


class RNN(nn.Module):
    """Elman RNN (tanh, or the authors' ReLU cell) or LSTM over N(0,1) token embeddings, read out at
    the last step.  ``lstm_init_state="normal"``: the LSTM starts from ``(h_0, c_0)`` drawn from
    N(0, 1) at every forward pass (training and evaluation, from torch's global generator), as the
    authors' code does; the default starts from zeros."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, out_dim: int, lstm: bool):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, cfg.dim)
        if not lstm and cfg.rnn_cell == "relu_elman":
            self.rnn = ReluElman(cfg.dim)
        else:
            cell = nn.LSTM if lstm else nn.RNN
            self.rnn = cell(cfg.dim, cfg.hidden, num_layers=cfg.depth, batch_first=True)
        self.random_state = lstm and cfg.lstm_init_state == "normal"
        self.head = nn.Linear(cfg.hidden, out_dim)
        self.out_dim = out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the readout: ``(B, k)`` ids -> ``(B, hidden)``, the last state."""
        e = self.tok_emb(x)                                              # (B, k, dim)
        if self.random_state:
            shape = (self.rnn.num_layers, x.shape[0], self.rnn.hidden_size)  # (depth, B, hidden)
            h, _ = self.rnn(e, (torch.randn(shape, device=x.device), torch.randn(shape, device=x.device)))
        else:
            h, _ = self.rnn(e)
        return h[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out.squeeze(-1) if self.out_dim == 1 else out

    def readout(self) -> nn.Module:
        return self.head


# ----------------------------------------------------------------------------- factory


def build_model(cfg: ModelConfig, vocab_size: int, length: int, label_kind: str, n_classes: int = 0,
                seed: int | None = None) -> nn.Module:
    """Instantiate ``cfg`` for a task; ``seed`` (if given) fixes the initialisation.

    The output width follows the label kind: 1 (regression), ``n_classes`` (classification) or
    ``vocab_size`` (next-token; tied unembedding for the transformer).
    """
    if seed is not None:
        torch.manual_seed(seed)
    out_dim = {"regression": 1, "classification": n_classes, "next_token": vocab_size}[label_kind]
    if cfg.kind == "transformer":
        if label_kind == "next_token":
            model = NextTokenTransformer(cfg, vocab_size, length)
        else:
            model = Transformer(cfg, vocab_size, length, out_dim)
    elif cfg.kind in ("mlp", "mlp_xxt"):
        model = MLP(cfg, vocab_size, length, out_dim, xxt=cfg.kind == "mlp_xxt")
    else:
        model = RNN(cfg, vocab_size, out_dim, lstm=cfg.kind == "lstm")

    with torch.no_grad():
        if cfg.mimetic is not None:
            g = torch.Generator().manual_seed(0 if seed is None else seed)
            for block in model.blocks:
                block.attn.mimetic_init_(*cfg.mimetic, generator=g, form=cfg.mimetic_form)
        if cfg.init_scale != 1.0:
            for name, p in model.named_parameters():
                if not _is_norm_or_identity(name):
                    p.mul_(cfg.init_scale)
    if cfg.train_last_layer_only:
        keep = {id(p) for p in model.readout().parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    return model


class Readout(nn.Module):
    """The trainable part of a last-layer-only model, applied to cached body features:
    ``(B, width)`` features -> the model's output.  Shares its parameters with the model."""

    def __init__(self, head: nn.Module, out_dim: int):
        super().__init__()
        self.head, self.out_dim = head, out_dim

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        out = self.head(f)
        return out.squeeze(-1) if self.out_dim == 1 else out


@torch.no_grad()

def model_for(cfg: ModelConfig, data, seed: int | None = None) -> nn.Module:
    """:func:`build_model` for the runs of ``data`` (a :class:`symlib.data.TaskData`): its
    vocabulary, and its task's string length, label kind and classes — the model a run on ``data``
    trains, without unpacking them at every call site."""
    task = data.task
    return build_model(cfg, data.vocab_size, task.length, task.kind, task.n_classes, seed=seed)


def cached_readout(model: nn.Module, x: dict[str, torch.Tensor], chunk: int = 4096):
    """``(Readout, {split: features})`` when only ``model``'s readout trains and the frozen body
    does not use it, else ``None``.

    The body is then a fixed function of the input, so training the readout on features
    computed once gives the same optimisation as training the whole model with every other
    weight frozen — without a forward pass through the body at every step.  The tied next-token
    transformer (whose readout is its embedding) and a depth-1 MLP do not qualify.  Used by
    :func:`symlib.training.fit` for the random-features runs of *The transformer kernel*.
    """
    if not hasattr(model, "features") or (isinstance(model, MLP) and not len(model.rest)) \
            or getattr(model, "random_state", False):  # features drawn afresh at every forward
        return None
    head = model.readout()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if not trainable or trainable != {id(p) for p in head.parameters()}:
        return None
    was_training = model.training
    model.eval()
    feats = {split: torch.cat([model.features(t[i:i + chunk]) for i in range(0, len(t), chunk)])
             for split, t in x.items()}
    model.train(was_training)
    return Readout(head, model.out_dim), feats


@torch.no_grad()
def feature_spread(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """How much a model's readout features ``F = model.features(x)`` depend on the input.

    ``spread``     ‖F − F̄‖² / ‖F‖²: the share of the features' second moment that varies
                   across inputs (0: every input gives the same features);
    ``label_gap``  ‖F̄₊ − F̄₋‖ / mean‖F‖: how far apart the mean features of the +1 and −1
                   strings lie, relative to the features' size.

    Both are what a readout trained on frozen features has to work with.  Chapter: *The
    transformer kernel* (finite-width echo).
    """
    if not hasattr(model, "features"):
        raise ValueError(f"{type(model).__name__} has no features() (only a separate readout can be probed)")
    was_training = model.training
    model.eval()
    f = model.features(x).double()                                    # (B, width)
    model.train(was_training)
    if not ((y > 0).any() and (y < 0).any()):
        raise ValueError("label_gap needs both +1 and -1 labels in y")
    spread = (f - f.mean(0)).pow(2).sum() / f.pow(2).sum()
    gap = (f[y > 0].mean(0) - f[y < 0].mean(0)).norm() / f.norm(dim=1).mean()
    return {"spread": float(spread), "label_gap": float(gap)}


def _is_norm_or_identity(name: str) -> bool:
    return ".ln" in name or name.startswith("ln") or name.endswith(("a_h", "b_h"))


def identity_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The per-head scalars ``a_h`` / ``b_h`` of every block (empty for a plain model)."""
    return {n: p for n, p in model.named_parameters() if n.endswith(("a_h", "b_h"))}

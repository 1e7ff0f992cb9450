"""Training a :class:`~symlib.gpt.GPT` on a token stream: :func:`fit_lm`, resumable, one record per run.

Chapter: *Language models* (``language_model``); its baseline checkpoint is what *Pretraining*
(``pretrained``) fine-tunes.

The authors' settings are the defaults [exact]: AdamW, lr 3e-4 constant, no weight decay,
gradient clipping at 1.0; batch 8 [exact] of ``context``-token blocks (ours 256, theirs 1024).
A plain PyTorch loop (within a few percent of a bare one: :func:`benchmark`):

* the data are one in-memory ``(N,)`` tensor of ids per split (:func:`lm_data`); a batch is
  ``batch_size`` random contiguous blocks of ``context + 1`` tokens, their starts drawn by a
  generator seeded with the run's seed alone — so the baseline and a modified model of the same
  seed (identical at initialisation, :mod:`symlib.gpt`) also see the same batches;
* every ``eval_every`` steps: validation loss (nats/token), perplexity ``exp(loss)`` and token
  accuracy on ``eval_blocks`` fixed validation blocks, the mean training loss since the last
  evaluation, and ``a_h``, ``b_h`` of every layer and head; at the end the whole validation and test
  splits;
* a checkpoint (model, optimizer, batch generator, curve) is written atomically every
  ``checkpoint_every_s`` seconds to ``<store>/lm_checkpoints/<key>.pt`` (out of git); calling
  :func:`fit_lm` again with the same config resumes from it and ends in the same state, bit for
  bit, as a run never interrupted;
* the finished run's record — config, metrics, curve, wall time, provenance — is written to
  ``<store>/lm_runs/<key>.json`` (a :class:`~symlib.runs.RunResult`; the template-task records of
  ``runs/`` are checked against their task configs, so LM records live beside them) and its
  weights, bf16, to ``<store>/lm_checkpoints/<key>.safetensors``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from .checks import positive_int
from .gpt import GPT, GPTConfig, build_gpt, config_from_dict
from .runs import RunResult, provenance
from .store import RunStore, atomic_write_bytes, atomic_write_text

PRECISIONS = ("32", "bf16")


@dataclass(frozen=True)
class LMTrainConfig:
    """The optimisation protocol of one LM run; part of its key."""

    steps: int = 8800          # 8800 × 8 × 256 ≈ 18 M tokens
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 200      # steps between evaluations (and the last step)
    eval_blocks: int = 128     # validation blocks per evaluation (evenly spaced; the final one uses all)
    precision: str = "32"      # "bf16": training forward under bf16 autocast (evaluation stays fp32)

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_blocks"):
            positive_int(f"LM train {name}", getattr(self, name))
        for name, low in (("lr", 0.0), ("weight_decay", None), ("grad_clip", 0.0)):
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            if not ok or (v <= low if low is not None else v < 0):
                raise ValueError(f"LM train {name} must be a finite {'positive' if low is not None else 'non-negative'} "
                                 f"number; got {v!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class LMData:
    """Token streams of a corpus: ``(N,)`` int tensors per split and the corpus identity
    (``name``, tokenizer and split fingerprints) that goes into a run's key."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    identity: dict

    def __post_init__(self):
        for split in ("train", "val", "test"):
            t = getattr(self, split)
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype.is_floating_point:
                raise ValueError(f"LMData.{split} must be a 1-D integer tensor")


def lm_data(corpus: str = "gutenberg-sotu", vocab_size: int = 8192, root=None, path=None) -> LMData:
    """The corpus (:func:`symlib.corpus.load_corpus`), its tokenizer trained on the training split
    (:func:`symlib.tokenizer.corpus_tokenizer`) and the three splits as token tensors (cached)."""
    from .corpus import load_corpus
    from .tokenizer import corpus_tokenizer, corpus_tokens
    c = load_corpus(corpus, root=root, path=path)
    tok = corpus_tokenizer(c, vocab_size, root=root)
    splits = {s: corpus_tokens(c, s, tok, root=root) for s in ("train", "val", "test")}
    identity = {"name": c.name, "vocab_size": tok.vocab_size, "tokenizer": tok.fingerprint[:16],
                **{f"{s}_sha": c.fingerprint(s)[:16] for s in splits},
                **{f"{s}_tokens": len(t) for s, t in splits.items()}}
    return LMData(**splits, identity=identity)


@dataclass(frozen=True)
class LMRunConfig:
    """Everything that determines an LM run's numbers; ``key`` is a stable hash of it."""

    corpus: dict
    model: GPTConfig
    train: LMTrainConfig
    seed: int = 0

    def to_dict(self) -> dict:
        return {"kind": "lm", "corpus": self.corpus, "model": self.model.to_dict(),
                "train": asdict(self.train), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "LMRunConfig":
        return cls(d["corpus"], GPTConfig.from_dict(d["model"]), config_from_dict(LMTrainConfig, d["train"]), d["seed"])

    @property
    def key(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "lm-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- batches and metrics


def sample_blocks(tokens: torch.Tensor, batch_size: int, context: int, generator: torch.Generator):
    """``batch_size`` random contiguous blocks: inputs and next-token targets, ``(B, T)`` each."""
    starts = torch.randint(0, len(tokens) - context, (batch_size,), generator=generator)  # (B,)
    idx = starts[:, None] + torch.arange(context + 1)                                     # (B, T+1)
    block = tokens[idx].long()
    return block[:, :-1], block[:, 1:]


def eval_blocks(tokens: torch.Tensor, context: int, n: int | None = None) -> torch.Tensor:
    """Non-overlapping ``(context + 1)``-token blocks of a split (stride ``context``), ``(M, T+1)``;
    ``n`` of them evenly spaced if ``n`` is given."""
    m = (len(tokens) - 1) // context
    if m < 1:
        raise ValueError(f"a split of {len(tokens)} tokens holds no block of {context + 1}")
    rows = torch.arange(m) if n is None or n >= m else torch.linspace(0, m - 1, n).round().long()
    return tokens[rows[:, None] * context + torch.arange(context + 1)].long()


@torch.no_grad()
def evaluate(model: GPT, blocks: torch.Tensor, prefix: str, batch: int = 16) -> dict:
    """``{prefix}_loss`` (nats/token), ``{prefix}_ppl`` = exp(loss) and ``{prefix}_acc`` (share of
    tokens whose arg-max prediction is right) over ``(M, T+1)`` blocks, in fp32."""
    was = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for i in range(0, len(blocks), batch):
        x, y = blocks[i:i + batch, :-1], blocks[i:i + batch, 1:]
        logits = model(x)                                                     # (b, T, vocab)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        count += y.numel()
    model.train(was)
    loss = total / count
    return {f"{prefix}_loss": loss, f"{prefix}_ppl": math.exp(min(loss, 700.0)), f"{prefix}_acc": correct / count}


def train_step(model: GPT, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               grad_clip: float, bf16: bool) -> torch.Tensor:
    """One AdamW step on a batch; returns the (detached) loss before it."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)                                                     # (B, T, vocab)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.detach()


def make_optimizer(model: GPT, cfg: LMTrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


# ----------------------------------------------------------------------------- storage


def record_path(store: RunStore, key: str) -> Path:
    return Path(store.root) / "lm_runs" / f"{key}.json"


def checkpoint_path(store: RunStore, key: str) -> Path:
    return Path(store.root) / "lm_checkpoints" / f"{key}.pt"


def weights_path(store: RunStore, key: str) -> Path:
    return Path(store.root) / "lm_checkpoints" / f"{key}.safetensors"


def get_lm_run(store: RunStore, key: str) -> RunResult | None:
    """The stored record of LM run ``key``, ``None`` if it was never run; a corrupt one is an error."""
    path = record_path(store, key)
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        result = RunResult.from_dict(d)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt LM run record {path} ({type(e).__name__}: {e}); delete it and re-run") from None
    if result.key != key or LMRunConfig.from_dict(result.config).key != key:
        raise ValueError(f"corrupt LM run record {path}: its config does not hash to its key; delete it and re-run")
    return result


def lm_frame(store: RunStore) -> pd.DataFrame:
    """One row per stored LM run: ``key``, ``variant``, ``seed``, corpus name, steps, batch size,
    precision and the final metrics (what :func:`symlib.language_model.paired_deltas` reads)."""
    rows = []
    folder = Path(store.root) / "lm_runs"
    for p in sorted(folder.glob("lm-*.json")) if folder.is_dir() else []:
        r = get_lm_run(store, p.stem)
        cfg = LMRunConfig.from_dict(r.config)
        rows.append({"key": r.key, "variant": cfg.model.variant, "seed": cfg.seed, "corpus": cfg.corpus.get("name"),
                     "dim": cfg.model.dim, "depth": cfg.model.depth, "context": cfg.model.context,
                     "steps": cfg.train.steps, "batch_size": cfg.train.batch_size,
                     "precision": cfg.train.precision, **r.metrics, "wall_time_s": r.wall_time_s})
    return pd.DataFrame(rows)


def save_weights(model: GPT, path: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """The model's weights as safetensors (``dtype``), its :class:`GPTConfig` in the metadata."""
    from safetensors.torch import save
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(path), save(tensors, metadata={"gpt_config": json.dumps(model.cfg.to_dict())}))
    return Path(path)


def load_weights(path: str | Path) -> GPT:
    """A :class:`GPT` from :func:`save_weights` (float32 parameters)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no weights file {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if "gpt_config" not in meta:
            raise ValueError(f"{path} is not a symlib GPT weights file (no gpt_config in its metadata)")
        model = build_gpt(GPTConfig.from_dict(json.loads(meta["gpt_config"])), seed=0)
        model.load_state_dict({k: f.get_tensor(k).float() for k in f.keys()})
    return model


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- the loop


def fit_lm(model_cfg: GPTConfig, train: LMTrainConfig, data: LMData, seed: int = 0, *,
           store: RunStore | None = None, threads: int | None = 1, checkpoint_every_s: float = 300.0,
           time_limit_s: float | None = None, stop_at_step: int | None = None,
           return_model: bool = False, progress: bool = False):
    """Train one LM run, or return its stored record.

    ``store``: where the record, checkpoints and final weights go (``None``: nothing is written
    and nothing resumed).  A checkpoint of the same config is resumed.  ``time_limit_s`` /
    ``stop_at_step``: stop early with a checkpoint written, and return ``None`` (call again to
    continue) — how a long run is cut into sessions.  ``threads``: torch intra-op threads
    (recorded in the provenance, not in the key).  ``progress``: a bar over steps on stderr (for
    the command line; never in notebook outputs).  Returns the :class:`RunResult` (and the model
    when ``return_model``)."""
    if not isinstance(model_cfg, GPTConfig) or not isinstance(train, LMTrainConfig) or not isinstance(data, LMData):
        raise ValueError("fit_lm takes a GPTConfig, an LMTrainConfig and an LMData")
    if data.identity.get("vocab_size", model_cfg.vocab_size) != model_cfg.vocab_size:
        raise ValueError(f"the data's vocabulary has {data.identity['vocab_size']} tokens, the model's "
                         f"{model_cfg.vocab_size}")
    if len(data.train) <= model_cfg.context:
        raise ValueError(f"the training split ({len(data.train)} tokens) is shorter than one block "
                         f"of {model_cfg.context + 1}")
    cfg = LMRunConfig(data.identity, model_cfg, train, seed)
    if store is not None and not return_model:
        found = get_lm_run(store, cfg.key)
        if found is not None:
            return found
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _fit(cfg, data, store, checkpoint_every_s, time_limit_s, stop_at_step, return_model,
                    threads if threads is not None else old_threads, progress)
    finally:
        torch.set_num_threads(old_threads)


def _fit(cfg: LMRunConfig, data: LMData, store, checkpoint_every_s, time_limit_s, stop_at_step,
         return_model, threads, progress=False):
    t, m = cfg.train, cfg.model
    start = time.perf_counter()
    model = build_gpt(m, cfg.seed)
    opt = make_optimizer(model, t)
    gen = torch.Generator().manual_seed(cfg.seed)
    val_blocks = eval_blocks(data.val, m.context, t.eval_blocks)
    step, curve, loss_sum, loss_n, elapsed = 0, [], 0.0, 0, 0.0
    ckpt = checkpoint_path(store, cfg.key) if store is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        if state.get("key") != cfg.key:
            raise ValueError(f"checkpoint {ckpt} belongs to run {state.get('key')!r}, not {cfg.key}; delete it")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, curve, loss_sum, loss_n, elapsed = (state["step"], state["curve"], state["loss_sum"],
                                                  state["loss_n"], state["elapsed"])

    def checkpoint():
        _save_checkpoint(ckpt, {"key": cfg.key, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "generator": gen.get_state(), "step": step, "curve": curve, "loss_sum": loss_sum,
                                "loss_n": loss_n, "elapsed": elapsed + time.perf_counter() - start})

    model.train()
    last_ckpt = time.perf_counter()
    bar = _step_bar(t.steps, step, cfg.model.variant, cfg.seed) if progress else None
    while step < t.steps:
        x, y = sample_blocks(data.train, t.batch_size, m.context, gen)            # (B, T) each
        loss = train_step(model, opt, x, y, t.grad_clip, t.precision == "bf16")
        step += 1
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        if step % t.eval_every == 0 or step == t.steps:
            row = {"step": step, "tokens": step * t.batch_size * m.context,
                   "train_loss": loss_sum / loss_n, **evaluate(model, val_blocks, "val"),
                   **model.identity_coefficients(), "wall_s": round(elapsed + time.perf_counter() - start, 2)}
            curve.append(row)
            loss_sum, loss_n = 0.0, 0
            if bar is not None:
                bar.set_postfix(val_loss=f"{row['val_loss']:.3f}", refresh=False)
        if bar is not None:
            bar.update()
        if ckpt is None or step == t.steps:
            continue
        now = time.perf_counter()
        stop = (stop_at_step is not None and step >= stop_at_step) or \
               (time_limit_s is not None and now - start >= time_limit_s)
        if stop or now - last_ckpt >= checkpoint_every_s:
            checkpoint()
            last_ckpt = time.perf_counter()
        if stop:
            if bar is not None:
                bar.close()
            return None
    if bar is not None:
        bar.close()
    metrics = summarize_lm(curve, evaluate(model, eval_blocks(data.val, m.context), "val"),
                           evaluate(model, eval_blocks(data.test, m.context), "test"), model)
    wall = elapsed + time.perf_counter() - start
    result = RunResult(cfg.key, cfg.to_dict(), metrics, curve, round(wall, 3), provenance(threads, "cpu"))
    if store is not None:
        save_weights(model, weights_path(store, cfg.key))
        atomic_write_text(record_path(store, cfg.key), json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
        ckpt.unlink(missing_ok=True)
    return (result, model) if return_model else result


def _step_bar(total: int, done: int, variant: str, seed: int):
    from tqdm.std import tqdm
    return tqdm(total=total, initial=done, desc=f"{variant} seed {seed}", unit="step", file=sys.stderr,
                dynamic_ncols=True, mininterval=5.0)


def summarize_lm(curve: list[dict], val: dict, test: dict, model: GPT) -> dict:
    """Final metrics: the whole validation and test splits at the end, the best evaluation of the
    curve, and the learned ``a_h``, ``b_h`` (per layer, per head)."""
    best = min(curve, key=lambda r: r["val_loss"])
    return {"steps": curve[-1]["step"], "tokens": curve[-1]["tokens"], "train_loss": curve[-1]["train_loss"],
            **val, **test, "best_step": best["step"], "best_val_loss_blocks": best["val_loss"],
            **model.identity_coefficients()}


# ----------------------------------------------------------------------------- speed


def bare_steps(model: GPT, data: torch.Tensor, batch_size: int, steps: int, seed: int, bf16: bool = False) -> None:
    """The reference: the same training steps as a bare PyTorch loop."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - model.cfg.context, (batch_size,), generator=g)
        block = data[starts[:, None] + torch.arange(model.cfg.context + 1)].long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(block[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), block[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()


def benchmark(model_cfg: GPTConfig | None = None, batch_size: int = 8, steps: int = 20, repeats: int = 2,
              threads: int = 1, precisions=("32", "bf16")) -> list[dict]:
    """Tokens/s of :func:`fit_lm` end to end (no store; its evaluations on 4 small blocks
    included) against model construction plus :func:`bare_steps`, on the same model and data,
    interleaved, best of ``repeats``; for each precision.  Wall and CPU time (``process_time``,
    the fair measure on a loaded machine with ``threads=1``); ``ratio`` = bare / ours in CPU time.
    Random tokens: speed does not depend on the text."""
    model_cfg = model_cfg or GPTConfig()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, model_cfg.vocab_size, (200_000,), generator=g, dtype=torch.int32)
        data = LMData(tokens, tokens[:4 * model_cfg.context + 1], tokens[:4 * model_cfg.context + 1],
                      {"name": "random", "vocab_size": model_cfg.vocab_size})
        out = []
        for precision in precisions:
            train = LMTrainConfig(steps=steps, batch_size=batch_size, eval_every=steps, eval_blocks=1,
                                  precision=precision)
            ours, bare = [], []  # (wall s, CPU s) of each repeat
            for r in range(repeats):
                for side in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
                    t0, c0 = time.perf_counter(), time.process_time()
                    if side == "ours":
                        fit_lm(model_cfg, train, data, seed=r, threads=threads)
                    else:
                        bare_steps(build_gpt(model_cfg, r), tokens, batch_size, steps, r, precision == "bf16")
                    (ours if side == "ours" else bare).append((time.perf_counter() - t0, time.process_time() - c0))
            n = steps * batch_size * model_cfg.context
            o_cpu, b_cpu = min(c for _, c in ours), min(c for _, c in bare)
            out.append({"precision": precision, "batch_size": batch_size, "threads": threads,
                        "ours_tokens_per_s": n / min(w for w, _ in ours), "bare_tokens_per_s": n / min(w for w, _ in bare),
                        "ours_tokens_per_cpu_s": n / o_cpu, "bare_tokens_per_cpu_s": n / b_cpu, "ratio": b_cpu / o_cpu})
        return out
    finally:
        torch.set_num_threads(old)


if __name__ == "__main__":  # python -m symlib.lm: the speed benchmark
    import argparse
    p = argparse.ArgumentParser(prog="python -m symlib.lm", description="LM training speed: ours vs a bare loop")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    for r in benchmark(batch_size=a.batch_size, steps=a.steps, repeats=a.repeats, threads=a.threads):
        print(f"{r['precision']:>4s} batch {r['batch_size']} threads {r['threads']}: ours "
              f"{r['ours_tokens_per_cpu_s']:7.0f} tokens/CPU-s ({r['ours_tokens_per_s']:.0f}/s wall), bare "
              f"{r['bare_tokens_per_cpu_s']:7.0f} tokens/CPU-s ({r['bare_tokens_per_s']:.0f}/s wall), "
              f"ratio {r['ratio']:.3f}")

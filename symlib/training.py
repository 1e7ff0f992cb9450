"""Training one run: a LightningModule / LightningDataModule pair and :func:`fit`.

The run's configs and its record are plain data in :mod:`symlib.runs` (no Lightning); this module
trains.  Squared loss on ±1 labels (cross-entropy for classification and next-token), test
metrics on a fresh test alphabet.

:func:`fit` seeds everything, fixes the thread count, runs Lightning's Trainer with its
overheads off (no progress bar, summary, checkpointing, logger or sanity steps), and returns a
:class:`~symlib.runs.RunResult` of plain data: config, final metrics, learning curve, wall time,
provenance.  Data stay as whole in-memory tensors; a mini-batch is one index into them.  Used by
every experiment chapter.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Checkpoint

from .data import DataConfig, TaskData, make_data
from .models import ModelConfig, cached_readout, model_for
from .runs import (PRECISIONS, RunConfig, RunResult, TrainConfig, converged, git_commit, provenance, run_config,
                   summarize)
from .tasks import from_spec

# ----------------------------------------------------------------------------- Lightning


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors; the whole set as one batch when it fits."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        n = len(self.x)
        if n <= self.batch_size:
            yield self.x, self.y
            return
        perm = torch.randperm(n, generator=self.generator)
        for i in range(0, n, self.batch_size):
            idx = perm[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


class TemplateDataModule(L.LightningDataModule):
    """Holds a :class:`~symlib.data.TaskData`; serves the train split as :class:`TensorBatches`."""

    def __init__(self, data: TaskData, batch_size: int, seed: int):
        super().__init__()
        self.data = data
        self.batches = TensorBatches(data.x["train"], data.y["train"], batch_size, seed)

    def train_dataloader(self):
        return self.batches

    def state_dict(self) -> dict:
        """The shuffling generator's state: a resumed run draws the batches it would have drawn."""
        return {"generator": self.batches.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.batches.generator.set_state(state["generator"])


def loss_fn(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE for regression, cross-entropy for classification and next-token prediction."""
    return F.mse_loss(out, y) if kind == "regression" else F.cross_entropy(out, y)


def error_fn(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0-1 error: sign mismatch for regression (±1 labels), arg-max mismatch otherwise."""
    if kind == "regression":
        return (torch.sign(out) != torch.sign(y)).float().mean()
    return (out.argmax(-1) != y).float().mean()


def other_label_error(pred: torch.Tensor, x: torch.Tensor, y: torch.Tensor, template: torch.Tensor,
                      positions: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """Share of strings whose predicted token ``pred`` (N,) is wrong and equals the token at one of
    their template's ``positions`` (``TemplateTask.other_label_positions``): in variable binding,
    the value of the other variable.  The rest of the test error is "any other token"."""
    mask = torch.zeros(len(positions), x.shape[1], dtype=torch.bool, device=x.device)  # (T, k)
    for j, ps in enumerate(positions):
        mask[j, list(ps)] = True
    hit = ((x == pred[:, None]) & mask[template]).any(1)  # (N,)
    return (hit & (pred != y)).float().mean()


class TemplateModule(L.LightningModule):
    """Trains ``model`` on one template task and records the learning curve.

    At every ``eval_every``-th epoch (and the last) it evaluates validation and test splits in
    one full-batch forward each and appends a row to ``self.curve``.
    """

    def __init__(self, model: torch.nn.Module, kind: str, train: TrainConfig, data: TaskData):
        super().__init__()
        self.model, self.kind, self.cfg, self.data = model, kind, train, data
        self.curve: list[dict] = []
        self._losses: list[torch.Tensor] = []  # detached batch losses of the epoch
        self._errors: list[torch.Tensor] = []  # detached batch 0-1 errors (before the step)
        self._sizes: list[int] = []
        self.automatic_optimization = False  # one plain Adam step per batch: least overhead
        self.trained_on: str | None = None  # the device of training (Lightning moves the module back to the CPU after fit)

    def on_train_start(self):
        self.trained_on = str(self.device)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.model(x)
        loss = loss_fn(self.kind, out, y)
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self._losses.append(loss.detach())
        self._errors.append(error_fn(self.kind, out.detach(), y))
        self._sizes.append(len(x))

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        return torch.optim.SGD(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """``{split}_loss``, ``{split}_error`` and, for a next-token task whose templates hold each
        other's labels (variable binding), ``{split}_error_other_label``: the share of strings
        answered with another template's label (:func:`other_label_error`)."""
        was_training = self.model.training
        self.model.eval()
        x, y = self.data.x[split].to(self.device), self.data.y[split].to(self.device)
        out = self.model(x)
        self.model.train(was_training)
        row = {f"{split}_loss": loss_fn(self.kind, out, y).item(), f"{split}_error": error_fn(self.kind, out, y).item()}
        positions = self.data.task.other_label_positions
        if any(positions):
            template = self.data.template[split].to(self.device)
            row[f"{split}_error_other_label"] = other_label_error(out.argmax(-1), x, y, template, positions).item()
        return row

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["symlib"] = {"curve": self.curve, "torch_rng": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.curve = checkpoint["symlib"]["curve"]
        torch.set_rng_state(checkpoint["symlib"]["torch_rng"])

    def on_train_epoch_end(self):
        epoch = self.current_epoch + 1
        sizes = torch.tensor(self._sizes, dtype=torch.float32)
        train_loss = float((torch.stack(self._losses).cpu() * sizes).sum() / sizes.sum())
        train_error = float((torch.stack(self._errors).cpu() * sizes).sum() / sizes.sum())
        self._losses, self._errors, self._sizes = [], [], []
        if epoch % self.cfg.eval_every and epoch != self.cfg.epochs:
            return
        self.curve.append({"epoch": epoch, "train_loss": train_loss, "train_error": train_error,
                           **self.evaluate("val"), **self.evaluate("test")})
        if converged(self.curve, self.cfg):
            self.trainer.should_stop = True


class EpochBar(L.Callback):
    """A tqdm bar over epochs on stderr (opt-in; never in notebook outputs)."""

    def on_train_start(self, trainer, module):
        from tqdm.std import tqdm
        self.bar = tqdm(total=trainer.max_epochs, desc="epochs", file=sys.stderr, leave=False)

    def on_train_epoch_end(self, trainer, module):
        self.bar.update(1)

    def on_train_end(self, trainer, module):
        self.bar.close()


class Resumable(Checkpoint):
    """Saves the whole training state of a run to ``path`` every ``every_s`` seconds (at the end of
    an epoch), so that a run killed mid-way — a session ending, a machine going back — resumes
    there instead of starting over (:func:`fit` with ``checkpoint=``).  A :class:`Checkpoint`
    subclass so that Lightning calls it after the module has appended the epoch's curve row.

    The file holds Lightning's checkpoint (weights, optimizer, loop counters, the datamodule's
    shuffling generator) plus the module's curve and torch's RNG state, and this callback's
    ``key`` (the run's config hash, checked on resume), ``elapsed_s`` (wall time of the earlier
    sessions, so the record's ``wall_time_s`` counts the whole run) and ``thread_s`` (their wall
    time × torch threads, so a run resumed with another thread count still records its CPU time).
    Written to a temporary file and renamed: a kill while saving leaves the previous checkpoint
    whole."""

    def __init__(self, path: Path, key: str, every_s: float, threads: int = 1):
        self.path, self.key, self.every_s, self.threads = Path(path), key, every_s, threads
        self.elapsed_s = 0.0              # wall seconds of the sessions before this one (set on resume)
        self.thread_s = 0.0               # ... times the threads each of them ran with
        self.resumed_at: list[int] = []   # epochs at which this run was resumed
        self.start = self.last = time.perf_counter()

    def state_dict(self) -> dict:
        session = time.perf_counter() - self.start
        return {"key": self.key, "elapsed_s": self.elapsed_s + session,
                "thread_s": self.thread_s + session * self.threads, "resumed_at": self.resumed_at}

    def load_state_dict(self, state: dict) -> None:
        self.elapsed_s, self.resumed_at = state["elapsed_s"], list(state["resumed_at"])
        # checkpoints written before thread_s existed: their sessions ran with this one's threads
        self.thread_s = state.get("thread_s", state["elapsed_s"] * self.threads)

    def on_train_start(self, trainer, module):
        if trainer.current_epoch:
            self.resumed_at.append(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, module):
        now = time.perf_counter()
        if trainer.should_stop or trainer.current_epoch + 1 >= trainer.max_epochs or now - self.last < self.every_s:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.save.tmp")
        try:
            trainer.save_checkpoint(tmp)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.last = time.perf_counter()


def checkpoint_state(path: str | os.PathLike) -> dict:
    """The :class:`Resumable` state stored in the checkpoint file ``path`` (``key``,
    ``elapsed_s``, ``resumed_at``), with a clear error for a file that is not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        return next(v for k, v in ckpt["callbacks"].items() if k.startswith("Resumable"))
    except (OSError, RuntimeError, KeyError, StopIteration, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} is not a checkpoint of a symlib run ({type(e).__name__}: {e}); "
                         "delete it to start the run over") from None


# ----------------------------------------------------------------------------- fit


def fit(task, model: ModelConfig | None = None, train: TrainConfig | None = None,
        data: DataConfig | int = 64, seed: int = 0, *, threads: int | None = 1,
        progress: bool = False, return_model: bool = False, cache_features: bool = True,
        device: str = "auto", checkpoint: str | os.PathLike | None = None, checkpoint_every_s: float = 600.0):
    """Train one run and return its :class:`RunResult` (and the model if ``return_model``).

    ``task``: a registry name, a spec dict, a ``TemplateTask`` or a :class:`RunConfig` (then the
    other config arguments are ignored).  ``threads``: torch intra-op threads during the run
    (``None`` leaves torch's setting); it is recorded in the provenance, not in the config hash
(a run resumed with another count records the time-weighted mean, so that wall time × threads
stays its CPU time).
    ``cache_features``: when only the readout trains, compute the frozen body's features once
    (:func:`~symlib.models.cached_readout`) — the same optimisation, without the body's forward
    pass at every step; a pure speed-up, so not part of the config hash (a test checks that
    both paths agree).  ``device``: ``"auto"`` (a GPU when torch sees one, else the CPU), ``"cpu"``
    or ``"cuda"`` (:func:`accelerator`); the device used is recorded in the provenance.

    ``checkpoint``: a file for the run's training state, saved every ``checkpoint_every_s``
    seconds (:class:`Resumable`).  If it exists when ``fit`` starts, the run resumes from it —
    the same numbers as a run never interrupted (a test checks it) — after checking that it
    belongs to this config; it is removed once the run has finished.  Sweeps pass one per run
    (:meth:`symlib.store.RunStore.checkpoint_path`).
    """
    accel = accelerator(device)
    commit = git_commit()  # the code this run trains with: a commit made while it trains is not its code
    if not checkpoint_every_s >= 0:
        raise ValueError(f"checkpoint_every_s must be a number of seconds >= 0; got {checkpoint_every_s!r}")
    cfg = task if isinstance(task, RunConfig) else run_config(task, model, train, data, seed)
    the_task = from_spec(cfg.task)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        task_data = make_data(the_task, cfg.data, seed=cfg.seed)
        L.seed_everything(cfg.seed, verbose=False)
        net = model_for(cfg.model, task_data, seed=cfg.seed)
        trained, fit_data = net, task_data
        cached = cached_readout(net, task_data.x) if cache_features else None
        if cached is not None:
            trained, features = cached
            fit_data = replace(task_data, x=features)
        module = TemplateModule(trained, the_task.kind, cfg.train, fit_data)
        resume, saver = None, None
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if checkpoint.exists():
                stored = checkpoint_state(checkpoint)["key"]
                if stored != cfg.key:
                    raise ValueError(f"checkpoint {checkpoint} belongs to run {stored}, not to {cfg.key}; "
                                     "pass this run's own checkpoint path (RunStore.checkpoint_path)")
                resume = checkpoint
            saver = Resumable(checkpoint, cfg.key, checkpoint_every_s, torch.get_num_threads())
        with _quiet():
            trainer = _trainer(cfg.train, progress, accel, [saver] if saver else [])
            trainer.fit(module, datamodule=TemplateDataModule(fit_data, cfg.train.batch_size, cfg.seed),
                        ckpt_path=resume)
        session = time.perf_counter() - start
        wall = session + (saver.elapsed_s if saver else 0.0)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    prov = provenance(used, module.trained_on or str(module.device), commit)
    if saver and saver.resumed_at:
        prov["resumed_at_epochs"] = saver.resumed_at
        thread_s = saver.thread_s + session * used
        if abs(thread_s - wall * used) > 1e-6 * wall:  # resumed with another thread count:
            prov["threads"] = round(thread_s / wall, 3)  # the time-weighted mean, so wall × threads = CPU time
    result = RunResult(cfg.key, cfg.to_dict(), summarize(module.curve), module.curve, round(wall, 3), prov)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    net.cpu()
    return (result, net) if return_model else result


DEVICES = ("auto", "cpu", "cuda")


def accelerator(device: str) -> str:
    """Lightning's accelerator for ``device`` (one of :data:`DEVICES`); a clear error for a GPU that
    is not there.  On CUDA, deterministic cuBLAS needs a fixed workspace, set here unless the
    caller chose one."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}); use device 'cpu' or 'auto'")
    if device == "cpu" or not cuda:
        return "cpu"
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic=True
    return "gpu"


def _trainer(train: TrainConfig, progress: bool, accel: str = "cpu", callbacks: list | None = None) -> L.Trainer:
    return L.Trainer(
        max_epochs=train.epochs, accelerator=accel, devices=1, logger=False, precision=PRECISIONS[train.precision],
        # on only for a Resumable callback (Lightning then adds no checkpointing of its own)
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks or []), enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, deterministic=True,
        callbacks=([EpochBar()] if progress else []) + (callbacks or []))


class _quiet:
    """Silence Lightning's info banners and known-benign warnings for the duration of a fit."""

    NAMES = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")

    def __enter__(self):
        self.levels = {n: logging.getLogger(n).level for n in self.NAMES}
        for n in self.NAMES:
            logging.getLogger(n).setLevel(logging.WARNING)
        self.warn = warnings.catch_warnings()
        self.warn.__enter__()
        for pattern in (".*does not have many workers.*", ".*LightningDataModule.*",
                        ".*Total length of .* across ranks.*", ".*isinstance.*treespec.*"):
            warnings.filterwarnings("ignore", message=pattern)

    def __exit__(self, *exc):
        self.warn.__exit__(*exc)
        for n, level in self.levels.items():
            logging.getLogger(n).setLevel(level)

"""Training one run: a LightningModule / LightningDataModule pair and :func:`fit`.

The paper's protocol is the default [exact where known]: Adam, lr 1e-3, batch 1024 (full batch
for n <= 1024), 1000 epochs, squared loss on ±1 labels (cross-entropy for classification and
next-token), test metrics on a fresh test alphabet.  Every value is overridable.

:func:`fit` seeds everything, fixes the thread count, runs Lightning's Trainer with its
overheads off (no progress bar, summary, checkpointing, logger or sanity steps), and returns a
:class:`RunResult` of plain data: config, final metrics, learning curve, wall time, provenance.
Data stay as whole in-memory tensors; a mini-batch is one index into them.  Used by every
experiment chapter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from . import __version__
from .data import DataConfig, TaskData, make_data
from .models import ModelConfig, build_model, cached_readout, without_added_defaults
from .tasks import from_spec, get_task
from .templates import TemplateTask

OPTIMIZERS = ("adam", "sgd")
STOP_METRICS = ("val_loss", "val_error")
PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed"}  # TrainConfig.precision -> Lightning's name



@dataclass(frozen=True)
class TrainConfig:
    """Optimisation protocol; part of a run's config hash.

    Early stopping is off by default.  With ``stop_train_loss`` set, a run stops at the first
    evaluation where the epoch's train loss is below ``stop_train_loss`` *and* the validation
    metric ``stop_metric`` (``val_loss`` or ``val_error``) moved by at most ``stop_val_rtol``
    (relative; absolute floor 1e-6) over the last ``stop_window`` epochs.  The validation alphabet
    is disjoint from the test alphabet, so the rule never looks at test data.

    Fields added after runs were stored (:data:`ADDED_FIELDS`) are left out of ``to_dict`` — and
    so of the config hash — while at their default, so the keys of stored runs stay valid.
    """

    epochs: int = 1000
    lr: float = 1e-3
    batch_size: int = 1024
    optimizer: str = "adam"
    weight_decay: float = 0.0
    eval_every: int = 20  # learning-curve cadence, in epochs
    stop_train_loss: float | None = None
    stop_window: int = 100
    stop_val_rtol: float = 0.02
    stop_metric: str = "val_loss"
    precision: str = "32"  # "bf16": training steps under bf16 autocast (evaluation stays float32)

    ADDED_FIELDS = {"stop_metric": "val_loss", "precision": "32"}

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every", "stop_window"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"train {name} must be a positive integer; got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"train lr must be a finite positive number; got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}")
        if self.stop_train_loss is not None and not (isinstance(self.stop_train_loss, (int, float))
                                                     and math.isfinite(self.stop_train_loss) and self.stop_train_loss > 0):
            raise ValueError(f"stop_train_loss must be a finite positive number or None; got {self.stop_train_loss!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.stop_metric not in STOP_METRICS:
            raise ValueError(f"unknown stop_metric {self.stop_metric!r}; allowed: {', '.join(STOP_METRICS)}")

    def to_dict(self) -> dict:
        return without_added_defaults(asdict(self), self.ADDED_FIELDS)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers.  ``key`` is a stable hash of it."""

    task: dict  # the task's spec, see symlib.tasks.from_spec
    model: ModelConfig
    train: TrainConfig
    data: DataConfig
    seed: int = 0

    def to_dict(self) -> dict:
        return {"task": self.task, "model": self.model.to_dict(), "train": self.train.to_dict(),
                "data": self.data.to_dict(), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return cls(task=d["task"], model=ModelConfig.from_dict(d["model"]),
                   train=_from_dict(TrainConfig, d["train"]), data=_from_dict(DataConfig, d["data"]),
                   seed=d["seed"])

    @property
    def key(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_config(task, model: ModelConfig | None = None, train: TrainConfig | None = None,
               data: DataConfig | int = 64, seed: int = 0) -> RunConfig:
    """Assemble a :class:`RunConfig`; ``task`` is a name, a spec dict or a ``TemplateTask``."""
    task = _as_task(task)
    if isinstance(data, int) and not isinstance(data, bool):
        data = DataConfig(n=data)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return RunConfig(task.spec, model or ModelConfig(), train or TrainConfig(), data, seed)


@dataclass
class RunResult:
    """Plain data of one finished run (what the run store writes, one record per run)."""

    key: str
    config: dict
    metrics: dict
    curve: list[dict]
    wall_time_s: float
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


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

    def forward(self, x):
        return self.model(x)

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


VAL_FLOOR = 1e-6  # absolute tolerance of the rule, so that it is relative down to tiny losses


def converged(curve: list[dict], cfg: TrainConfig) -> bool:
    """The early-stopping rule of :class:`TrainConfig`, applied to a learning curve so far."""
    if cfg.stop_train_loss is None or curve[-1]["train_loss"] >= cfg.stop_train_loss:
        return False
    back = [r for r in curve if r["epoch"] <= curve[-1]["epoch"] - cfg.stop_window]
    if not back:
        return False
    before, now = back[-1][cfg.stop_metric], curve[-1][cfg.stop_metric]
    return abs(now - before) <= max(cfg.stop_val_rtol * before, VAL_FLOOR)


def stopped_curve(curve: list[dict], cfg: TrainConfig) -> list[dict]:
    """The prefix of a full-length curve at which ``cfg``'s rule would have stopped the run.

    Training is deterministic, so a run with the rule equals the full run up to its stop; this
    is how the book checks the rule on full 1000-epoch runs without re-training.
    """
    for i in range(len(curve)):
        if converged(curve[:i + 1], cfg):
            return curve[:i + 1]
    return curve


class EpochBar(L.Callback):
    """A tqdm bar over epochs on stderr (opt-in; never in notebook outputs)."""

    def on_train_start(self, trainer, module):
        from tqdm.std import tqdm
        self.bar = tqdm(total=trainer.max_epochs, desc="epochs", file=sys.stderr, leave=False)

    def on_train_epoch_end(self, trainer, module):
        self.bar.update(1)

    def on_train_end(self, trainer, module):
        self.bar.close()


# ----------------------------------------------------------------------------- fit


def fit(task, model: ModelConfig | None = None, train: TrainConfig | None = None,
        data: DataConfig | int = 64, seed: int = 0, *, threads: int | None = 1,
        progress: bool = False, return_model: bool = False, cache_features: bool = True,
        device: str = "auto"):
    """Train one run and return its :class:`RunResult` (and the model if ``return_model``).

    ``task``: a registry name, a spec dict, a ``TemplateTask`` or a :class:`RunConfig` (then the
    other config arguments are ignored).  ``threads``: torch intra-op threads during the run
    (``None`` leaves torch's setting); it is recorded in the provenance, not in the config hash.
    ``cache_features``: when only the readout trains, compute the frozen body's features once
    (:func:`~symlib.models.cached_readout`) — the same optimisation, without the body's forward
    pass at every step; a pure speed-up, so not part of the config hash (a test checks that
    both paths agree).  ``device``: ``"auto"`` (a GPU when torch sees one, else the CPU), ``"cpu"``
    or ``"cuda"`` (:func:`accelerator`); the device used is recorded in the provenance.
    """
    accel = accelerator(device)
    cfg = task if isinstance(task, RunConfig) else run_config(task, model, train, data, seed)
    the_task = from_spec(cfg.task)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        task_data = make_data(the_task, cfg.data, seed=cfg.seed)
        L.seed_everything(cfg.seed, verbose=False)
        net = build_model(cfg.model, task_data.vocab_size, the_task.length, the_task.kind,
                          the_task.n_classes, seed=cfg.seed)
        trained, fit_data = net, task_data
        cached = cached_readout(net, task_data.x) if cache_features else None
        if cached is not None:
            trained, features = cached
            fit_data = replace(task_data, x=features)
        module = TemplateModule(trained, the_task.kind, cfg.train, fit_data)
        with _quiet():
            trainer = _trainer(cfg.train, progress, accel)
            trainer.fit(module, datamodule=TemplateDataModule(fit_data, cfg.train.batch_size, cfg.seed))
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(old_threads)
    result = RunResult(cfg.key, cfg.to_dict(), summarize(module.curve), module.curve, round(wall, 3),
                       provenance(threads if threads is not None else old_threads, str(module.device)))
    net.cpu()
    return (result, net) if return_model else result


def summarize(curve: list[dict]) -> dict:
    """Final metrics (the last evaluation, the paper's protocol) and, for reference, the test
    metrics at the evaluation of lowest validation loss.  ``train_error`` is the epoch's 0-1 error
    on its training batches, each measured before its step (records before it was added lack it)."""
    last = curve[-1]
    best = min(curve, key=lambda r: r["val_loss"])
    extra = {k: last[k] for k in ("test_error_other_label",) if k in last}
    return {"epochs_run": last["epoch"], "train_loss": last["train_loss"], "train_error": last["train_error"],
            "val_loss": last["val_loss"], "val_error": last["val_error"],
            "test_loss": last["test_loss"], "test_error": last["test_error"], **extra,
            "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
            "best_test_loss": best["test_loss"], "best_test_error": best["test_error"]}


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


def _trainer(train: TrainConfig, progress: bool, accel: str = "cpu") -> L.Trainer:
    return L.Trainer(
        max_epochs=train.epochs, accelerator=accel, devices=1, logger=False, precision=PRECISIONS[train.precision],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, deterministic=True,
        callbacks=[EpochBar()] if progress else [])


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


def provenance(threads: int, device: str) -> dict:
    """Code and library versions, thread count and device of a run."""
    import numpy
    return {"symlib": __version__, "git_commit": git_commit(), "torch": torch.__version__,
            "lightning": L.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "threads": threads, "device": device,
            "machine": platform.machine()}


_GIT: dict = {}


def git_commit() -> str | None:
    """HEAD of the repository holding symlib, with ``-dirty`` if symlib/ has local changes."""
    if "commit" not in _GIT:
        root = Path(__file__).resolve().parent.parent
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                 text=True, timeout=10).stdout.strip() or None
            dirty = subprocess.run(["git", "status", "--porcelain", "--", "symlib"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            _GIT["commit"] = f"{sha}-dirty" if sha and dirty else sha
        except (OSError, subprocess.SubprocessError):
            _GIT["commit"] = None
    return _GIT["commit"]


def _as_task(task) -> TemplateTask:
    if isinstance(task, TemplateTask):
        return task
    if isinstance(task, dict):
        return from_spec(task)
    if isinstance(task, str):
        return get_task(task)
    raise ValueError(f"task must be a registry name, a spec dict or a TemplateTask; got {type(task).__name__}")


def _from_dict(cls, d: dict):
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {sorted(unknown)}; allowed: {sorted(known)}")
    return cls(**d)

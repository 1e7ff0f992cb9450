"""From a template task to in-memory tensors with disjoint train / validation / test alphabets.

Token ids are laid out as ::

    [ regular tokens | train alphabet | validation alphabet | test alphabet ]
      0 .. R-1         R .. R+A_tr-1   ...                   ... vocab_size-1

Wildcards of a training string are substituted only by train-alphabet tokens, of a test string
only by test-alphabet tokens, so every wildcard of a test string is a token never seen in
training [exact].  By default ``n`` (training samples) equals the train alphabet size, so data
diversity grows with ``n`` [exact].  Per-template counts are multinomial in the template
probabilities [exact].  Sampling is vectorised (no per-sample Python).  Chapters: *Template
tasks* (shows the split), and every experiment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .checks import positive_int
from .templates import TemplateTask, is_wildcard, wildcards

SPLITS = ("train", "val", "test")
# Largest split and alphabet, checked before anything is allocated (the paper's largest n is
# 2^18): a split is an (n, length) tensor, an alphabet rows of the embedding.
MAX_SIZE = 2 ** 20
SPLIT_PREFIX = {"train": "s", "val": "v", "test": "t"}  # how alphabet tokens print


@dataclass(frozen=True)
class DataConfig:
    """Sizes of the three splits.  ``train_alphabet=None`` means ``= n`` (the paper's protocol)."""

    n: int
    train_alphabet: int | None = None
    n_val: int = 256
    val_alphabet: int = 256
    n_test: int = 1000
    test_alphabet: int = 1000

    def __post_init__(self):
        for name in ("n", "n_val", "n_test", "val_alphabet", "test_alphabet"):
            positive_int(name, getattr(self, name), MAX_SIZE, numpy_ok=True)
        if self.train_alphabet is not None:
            positive_int("train_alphabet", self.train_alphabet, MAX_SIZE, numpy_ok=True)

    @property
    def alphabet_sizes(self) -> dict[str, int]:
        return {"train": self.train_alphabet or self.n, "val": self.val_alphabet, "test": self.test_alphabet}

    @property
    def sample_sizes(self) -> dict[str, int]:
        return {"train": self.n, "val": self.n_val, "test": self.n_test}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TaskData:
    """Tensors of one run.  ``x_*``: (N, k) int64 token ids.  ``y_*``: (N,) float32 labels
    (regression) or int64 class / target-token ids.  ``template_*``: (N,) template index."""

    task: TemplateTask
    config: DataConfig
    vocab_size: int
    offsets: dict[str, int]  # first token id of each split's alphabet
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    template: dict[str, torch.Tensor]

    def token_name(self, i: int) -> str:
        """``'print'`` for a regular token, ``'s12'`` / ``'v3'`` / ``'t7'`` for alphabet tokens."""
        regular = self.task.regular
        if i < len(regular):
            return regular[i]
        for split in reversed(SPLITS):
            if i >= self.offsets[split]:
                return f"{SPLIT_PREFIX[split]}{i - self.offsets[split]}"
        raise AssertionError(i)

    def decode(self, row) -> str:
        return " ".join(self.token_name(int(i)) for i in row)

    def tokens(self, split: str) -> set[int]:
        """Set of alphabet token ids used by a split's strings."""
        ids = self.x[split][self.x[split] >= len(self.task.regular)]
        return set(ids.unique().tolist())


def make_data(task: TemplateTask, config: DataConfig | int, seed: int = 0) -> TaskData:
    """Sample the three splits of ``task``.  ``config`` may be a bare ``n``.

    Raises ``ValueError`` when an alphabet is too small for an injective substitution or when
    ``n`` is smaller than the number of templates.
    """
    if isinstance(config, int) and not isinstance(config, bool):
        config = DataConfig(n=config)
    if config.n < len(task.templates):
        raise ValueError(
            f"n = {config.n} training samples is fewer than the task's {len(task.templates)} "
            f"templates; use n >= {len(task.templates)}")
    sizes = config.alphabet_sizes
    for split, a in sizes.items():
        if a < task.n_wildcards:
            raise ValueError(
                f"the {split} alphabet has {a} tokens, too few for an injective substitution of "
                f"{task.n_wildcards} wildcards; use at least {task.n_wildcards}")

    regular = {t: i for i, t in enumerate(task.regular)}
    offsets, start = {}, len(regular)
    for split in SPLITS:
        offsets[split] = start
        start += sizes[split]
    vocab_size = start

    xs, ys, ts = {}, {}, {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, i])
        x, y, t = _sample_split(task, regular, config.sample_sizes[split], sizes[split], offsets[split], rng)
        xs[split], ys[split], ts[split] = x, y, t
    return TaskData(task, config, vocab_size, offsets, xs, ys, ts)


def _sample_split(task, regular, n, alphabet, offset, rng):
    counts = rng.multinomial(n, task.probs)
    x_parts, y_parts, t_parts = [], [], []
    for j, (z, label, m) in enumerate(zip(task.templates, task.labels, counts)):
        if m == 0:
            continue
        ws = wildcards(z)
        images = offset + _distinct_draws(rng, m, len(ws), alphabet)  # (m, |W|)
        col = {w: c for c, w in enumerate(ws)}
        x = np.empty((m, len(z)), dtype=np.int64)
        for p, s in enumerate(z):
            x[:, p] = images[:, col[s]] if is_wildcard(s) else regular[s]
        x_parts.append(x)
        if task.kind == "next_token":
            y = images[:, col[label]] if is_wildcard(label) else np.full(m, regular[label])
        else:
            y = np.full(m, label)
        y_parts.append(y)
        t_parts.append(np.full(m, j))
    order = rng.permutation(n)
    x = torch.from_numpy(np.concatenate(x_parts)[order])
    y = np.concatenate(y_parts)[order]
    y = torch.from_numpy(y.astype(np.float32) if task.kind == "regression" else y.astype(np.int64))
    t = torch.from_numpy(np.concatenate(t_parts)[order])
    return x, y, t


def _distinct_draws(rng: np.random.Generator, m: int, w: int, alphabet: int) -> np.ndarray:
    """``m`` rows of ``w`` distinct integers from ``range(alphabet)``, uniform, vectorised."""
    if w == 0:
        return np.empty((m, 0), dtype=np.int64)
    if alphabet <= 256:  # random permutation per row, first w columns
        return np.argsort(rng.random((m, alphabet)), axis=1)[:, :w].astype(np.int64)
    out = rng.integers(0, alphabet, size=(m, w))
    while True:  # redraw the rows with a collision (rare for alphabet > 256 >= 4 w^2)
        s = np.sort(out, axis=1)
        bad = (s[:, 1:] == s[:, :-1]).any(axis=1)
        if not bad.any():
            return out.astype(np.int64)
        out[bad] = rng.integers(0, alphabet, size=(int(bad.sum()), w))


def split_figure(data: TaskData, title: str | None = None):
    """How often each token id occurs in the strings of each split (a step histogram, colour =
    split): three disjoint ranges of ids.  Chapter *Template tasks*, the disjoint-alphabet split."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    ids = pd.concat([pd.DataFrame({"token id": data.x[s].flatten().numpy(), "split": s}) for s in SPLITS])
    fig, ax = plt.subplots(figsize=(8, 2.8))
    sns.histplot(ids, x="token id", hue="split", hue_order=list(SPLITS), bins=120, element="step", ax=ax)
    ax.set_ylabel("occurrences")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig

"""Every sweep of the book, by name, in two profiles — the one definition chapters and CLI share.

    configs = experiment("fig2", profile="paper")   # list[RunConfig]
    python -m symlib sweep fig2 --profile paper     # compute what the store lacks

Profiles:

* ``paper``  the paper's protocol (Adam, lr 1e-3, batch 1024, up to 1000 epochs, MSE on ±1
             labels, n = 2^2 … 2^13, fresh 1000-symbol test alphabet) with our widths.
* ``smoke``  tiny sizes and few epochs: every code path end to end in seconds (tests, CI).

Our widths [ours; the paper's are unknown]: the sweep transformer has dim 64, 2 heads × 64
(dim_head 64 as in the authors' code), MLP width 128, depth 2 — a quarter of the FLOPs of the
calibration model (dim 128, 4 × 64, MLP 256); the calibration found width 32–128 does not change
the picture at n <= 256.  MLP baselines: 3 linear layers of width 256; RNN/LSTM: embedding 64,
hidden 128.  Chapter: *Regression experiments* (and *The transformer kernel* for ``last_layer``).
"""

from __future__ import annotations

from dataclasses import replace

from .models import ModelConfig
from .sweep import grid
from .training import RunConfig, TrainConfig

PROFILES = ("paper", "smoke")

TRANSFORMER = ModelConfig(kind="transformer", dim=64, depth=2, heads=2, dim_head=64, mlp_dim=128)
MODELS = {
    "transformer": TRANSFORMER,
    "transformer + KQ": replace(TRANSFORMER, kq_identity=True),
    "transformer + VO": replace(TRANSFORMER, vo_identity=True),
    "transformer + KQ & VO": replace(TRANSFORMER, kq_identity=True, vo_identity=True),
    "MLP": ModelConfig(kind="mlp", hidden=256),
    "MLP + XXᵀ": ModelConfig(kind="mlp_xxt", hidden=256),
    "RNN": ModelConfig(kind="rnn", dim=64, hidden=128),
    "LSTM": ModelConfig(kind="lstm", dim=64, hidden=128),
}

# The paper's protocol, run to 1000 epochs (used to validate the early-stopping rule).
FULL = TrainConfig(epochs=1000, lr=1e-3, batch_size=1024, eval_every=20)
N_PAPER = [2 ** i for i in range(2, 14)]  # 4 … 8192
SEEDS_PAPER = [0, 1, 2]

SMOKE_TRAIN = TrainConfig(epochs=10, eval_every=5)
N_SMOKE = [4, 16]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return profile


def _smoke_model(m: ModelConfig) -> ModelConfig:
    return replace(m, dim=16, heads=2, dim_head=8, mlp_dim=16, hidden=16) if m.kind == "transformer" \
        else replace(m, dim=16, hidden=16)


def _grid(profile, tasks, models, n, seeds, train, data=None) -> list[RunConfig]:
    if profile == "smoke":
        return grid(tasks, [_smoke_model(m) for m in models], N_SMOKE, [0], SMOKE_TRAIN,
                    {"n_test": 64, "test_alphabet": 64, "n_val": 32, "val_alphabet": 32})
    return grid(tasks, models, n, seeds, train, data)


def protocol(profile: str) -> list[RunConfig]:
    """Full 1000-epoch runs on a sample of configurations (small and large n, each model family):
    the ground truth against which the early-stopping rule is checked."""
    models = [MODELS[k] for k in ("transformer", "transformer + KQ", "MLP", "LSTM")]
    return _grid(profile, "aba_abb", models, [16, 256, 2048], [0], FULL)


EXPERIMENTS = {
    "protocol": protocol,
}


def experiment(name: str, profile: str = "paper") -> list[RunConfig]:
    """The configs of experiment ``name`` in ``profile``."""
    check_profile(profile)
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name](profile)

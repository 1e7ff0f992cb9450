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
the picture at n <= 256.  MLP baselines: 3 linear layers of width 256.  RNN, LSTM and mimetic
initialisation as the authors' code builds them (``AUTHORS_MODELS``: a ReLU Elman cell and an LSTM
from a random-normal initial state, one width, 128; mimetic by their SVD form), the figures'
rows since check 3 of *Why our curves differ from the paper's*; ours (tanh RNN and zero-state LSTM,
embedding 64, hidden 128; mimetic as Trockman & Kolter's additive form) are the variant
``components_ours``.  Chapter: *Regression experiments* (and *The transformer kernel* for ``last_layer``).
"""

from __future__ import annotations

from dataclasses import replace

from .models import ModelConfig, model_label
from .runs import RunConfig, TrainConfig
from .store import results_frame
from .sweep import grid
from .tasks import get_task
from .templates import TemplateTask

PROFILES = ("paper", "smoke")

TRANSFORMER = ModelConfig(kind="transformer", dim=64, depth=2, heads=2, dim_head=64, mlp_dim=128)
# The models of the figures, by their label (symlib.models.model_label): "transformer",
# "transformer + KQ", "transformer + VO", "transformer + KQ & VO", "MLP", "MLP + XXᵀ", "RNN", "LSTM".
MODELS = {model_label(m): m for m in (
    TRANSFORMER,
    replace(TRANSFORMER, kq_identity=True),
    replace(TRANSFORMER, vo_identity=True),
    replace(TRANSFORMER, kq_identity=True, vo_identity=True),
    ModelConfig(kind="mlp", hidden=256),
    ModelConfig(kind="mlp_xxt", hidden=256),
    ModelConfig(kind="rnn", dim=64, hidden=128),
    ModelConfig(kind="lstm", dim=64, hidden=128),
)}

# The paper's protocol, run to 1000 epochs (used to validate the early-stopping rule).
FULL = TrainConfig(epochs=1000, lr=1e-3, batch_size=1024, eval_every=20)
N_PAPER = [2 ** i for i in range(2, 14)]  # 4 … 8192
SEEDS_PAPER = [0, 1, 2]

# The protocol of every other paper-profile sweep: FULL plus the early-stopping rule, which the
# *Regression experiments* chapter validates on the `protocol` runs (n <= 2048) — and only below
# FULL_FROM: at n >= 4096 `protocol_large` found a run whose test loss fell from 0.20 to 0.01 at
# epoch ~800, long after the rule would have stopped it, so large-n runs train all 1000 epochs.
PAPER = replace(FULL, stop_train_loss=1e-3, stop_window=100, stop_val_rtol=0.02)
FULL_FROM = 4096
N_COARSE = [16, 64, 256, 1024, 4096]  # hyper-parameter and random-template sweeps
MIMETIC = (0.7, 0.7)  # (alpha, beta) of Trockman & Kolter's W_q W_kᵀ ≈ alpha Z + beta I

# Check 3 (symlib.fidelity): three components as the authors' code builds them — what the paper
# ran, so the figures draw them (figure 2's RNN and LSTM, figure 7's mimetic row) — and ours, the
# book's first construction, kept as the stated variant `components_ours`.  By label.
AUTHORS_WIDTH = 128  # the authors' RNN and LSTM have one width (embedding = hidden): our hidden width [ours]
AUTHORS_RNN = ModelConfig(kind="rnn", dim=AUTHORS_WIDTH, hidden=AUTHORS_WIDTH, rnn_cell="relu_elman")
AUTHORS_LSTM = ModelConfig(kind="lstm", dim=AUTHORS_WIDTH, hidden=AUTHORS_WIDTH, lstm_init_state="normal")
AUTHORS_MIMETIC = replace(TRANSFORMER, mimetic=MIMETIC, mimetic_form="authors")
AUTHORS_MODELS = {model_label(m): m for m in (AUTHORS_RNN, AUTHORS_LSTM, AUTHORS_MIMETIC)}
OURS_MODELS = {model_label(m): m for m in (MODELS["RNN"], MODELS["LSTM"], replace(TRANSFORMER, mimetic=MIMETIC))}

SMOKE_TRAIN = TrainConfig(epochs=10, eval_every=5)
N_SMOKE = [4, 16]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return profile


def _smoke_model(m: ModelConfig) -> ModelConfig:
    return replace(m, dim=16, heads=2, dim_head=8, mlp_dim=16, hidden=16) if m.kind == "transformer" \
        else replace(m, dim=16, hidden=16)


def _smallest_n(task: TemplateTask) -> int:
    """n must cover every template once and give an injective substitution."""
    return max(len(task.templates), task.n_wildcards)


def _grid(profile, task, models, n, seeds, train) -> list[RunConfig]:
    """One task's grid; n values a task cannot take (fewer samples than templates or wildcards)
    are dropped; runs with n >= FULL_FROM train without the early-stopping rule; the smoke
    profile shrinks everything."""
    task = get_task(task) if isinstance(task, str) else task
    low = _smallest_n(task)
    if profile == "smoke":
        return grid(task, [_smoke_model(m) for m in models], sorted({max(k, low) for k in N_SMOKE}), [0],
                    replace(SMOKE_TRAIN, precision=train.precision), {"n_test": 64, "test_alphabet": 64, "n_val": 32, "val_alphabet": 32})
    n = [k for k in n if k >= low]
    full = replace(train, stop_train_loss=None)  # the rule off: every epoch of the protocol
    return (grid(task, models, [k for k in n if k < FULL_FROM], seeds, train)
            + grid(task, models, [k for k in n if k >= FULL_FROM], seeds, full))


def protocol(profile: str) -> list[RunConfig]:
    """Full 1000-epoch runs on a sample of configurations (small and large n, each model family):
    the ground truth against which the early-stopping rule is checked."""
    models = [MODELS[k] for k in ("transformer", "transformer + KQ", "MLP", "LSTM")]
    return _grid(profile, "aba_abb", models, [16, 256, 2048], [0], FULL)


def protocol_large(profile: str) -> list[RunConfig]:
    """Full 1000-epoch runs at the largest n, where a plain transformer may generalize late
    (an early-stopped run there can stop before a late drop of its test loss; the *Regression
    experiments* chapter shows the curves): extends the early-stopping check to the large-n end of
    the grid."""
    models = [MODELS[k] for k in ("transformer", "transformer + VO")]
    return _grid(profile, "aba_abb", models, [4096, 8192], [0], FULL)


def fig1(profile: str) -> list[RunConfig]:
    """Same/different: MLP vs transformer vs + KQ identity vs + both identities."""
    names = ("MLP", "transformer", "transformer + KQ", "transformer + KQ & VO")
    return _grid(profile, "same_different", [MODELS[k] for k in names], N_PAPER, SEEDS_PAPER, PAPER)


def fig2(profile: str) -> list[RunConfig]:
    """ABA vs ABB, architectures side by side; the RNN and the LSTM as the authors' code builds
    them (their runs are ``fidelity_components``')."""
    names = ("transformer", "transformer + KQ", "transformer + VO", "transformer + KQ & VO", "MLP")
    models = [MODELS[k] for k in names] + [AUTHORS_RNN, AUTHORS_LSTM]
    return _grid(profile, "aba_abb", models, N_PAPER, SEEDS_PAPER, PAPER)


def fig3(profile: str) -> list[RunConfig]:
    """Tasks: ABA vs ABB, AABB vs ABAB, majority-k (k = 2, 4, 6, 8); plain vs both identities."""
    tasks = [get_task("aba_abb"), get_task("aabb_abab")] + [get_task("majority", k=k) for k in (2, 4, 6, 8)]
    models = [MODELS["transformer"], MODELS["transformer + KQ & VO"]]
    return [c for t in tasks for c in _grid(profile, t, models, N_PAPER, SEEDS_PAPER, PAPER)]


RANDOM_DEFAULT = {"r": 4, "length": 5, "n_wildcards": 3, "n_regular": 0}  # [ours]
RANDOM_AXES = {"r": [2, 4, 8, 15], "n_wildcards": [2, 3, 5, 7], "n_regular": [0, 1, 2], "length": [2, 5, 10, 20]}


def labelled_draws(count: int, **params) -> list[TemplateTask]:
    """The first ``count`` draws of ``random_templates(**params, seed=0, 1, …)`` whose templates
    do not all share one label.  The generator labels templates at random, so a draw of r = 2
    templates is a constant function half the time — learnable from a handful of samples with no
    reasoning at all (seed 0 draws ``ββαβγ:+1, βββββ:+1``).  Figure 4 measures how much data
    *reasoning* needs, so it skips those draws [ours]."""
    draws = []
    for seed in range(100 * count):
        task = get_task("random_templates", seed=seed, **params)
        if len(set(task.labels)) > 1:
            draws.append(task)
            if len(draws) == count:
                return draws
    raise ValueError(f"random_templates({params}) gave fewer than {count} draws with both labels in "
                     f"{100 * count} seeds; use more templates (r >= 2)")


def random_draws(profile: str = "paper") -> list[tuple[str, object, list[TemplateTask]]]:
    """(axis, value, draws) for each variant of figure 4: the value on one axis, the others at
    ``RANDOM_DEFAULT``; three labelled draws in the paper profile, one in smoke."""
    count = len(SEEDS_PAPER) if check_profile(profile) == "paper" else 1
    out = []
    for axis, values in RANDOM_AXES.items():
        for v in values:
            params = {**RANDOM_DEFAULT, axis: v}
            if axis == "length" and v == 2:
                params["r"] = 2  # only αα and αβ exist at length 2 without regular tokens
            out.append((axis, v, labelled_draws(count, **params)))
    return out


def _random_variants(profile: str) -> list[tuple[str, object, list[RunConfig]]]:
    """Draw d of a variant is trained with seed d."""
    return [(axis, v, [c for s, task in enumerate(draws)
                       for c in _grid(profile, task, [MODELS["transformer"]], N_COARSE, [s], PAPER)])
            for axis, v, draws in random_draws(profile)]


def fig4(profile: str) -> list[RunConfig]:
    """Random template tasks: vary one of (templates r, wildcards |W|, regular |R|, length L)
    around ``RANDOM_DEFAULT``; plain transformer, coarse n grid, three random draws of each task
    (``labelled_draws``; draw d trained with seed d)."""
    return _unique(c for _, _, configs in _random_variants(profile) for c in configs)


HP_AXES = {
    "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "batch_size": [16, 64, 256, 1024],
    "depth": [1, 2, 4],
    "heads": [1, 2, 4, 8],
    "dim": [32, 64, 128, 256],
}


def _hp_variants(profile: str) -> list[tuple[str, object, list[RunConfig]]]:
    out = []
    for axis, values in HP_AXES.items():
        for v in values:
            model, train = MODELS["transformer"], PAPER
            if axis in ("lr", "batch_size"):
                train = replace(PAPER, **{axis: v})
            else:
                model = replace(model, **{axis: v})
            out.append((axis, v, _grid(profile, "aba_abb", [model], N_COARSE, [0], train)))
    return out


def fig5(profile: str) -> list[RunConfig]:
    """Hyper-parameters of the plain transformer on ABA vs ABB, one axis at a time around our
    defaults; one seed, coarse n grid."""
    return _unique(c for _, _, configs in _hp_variants(profile) for c in configs)


def _unique(configs) -> list[RunConfig]:
    return list({c.key: c for c in configs}.values())


VARIANTS = {"fig4": _random_variants, "fig5": _hp_variants}


def by_variant(name: str, frame, profile: str = "paper"):
    """Rows of ``frame`` (runs of ``fig4`` or ``fig5``) labelled with the ``axis`` varied and its
    ``value``; the default configuration belongs to every axis, so its runs appear once per axis."""
    import pandas as pd
    if name not in VARIANTS:
        raise ValueError(f"{name!r} has no axes; allowed: {', '.join(VARIANTS)}")
    parts = []
    for axis, value, configs in VARIANTS[name](check_profile(profile)):
        rows = frame[frame.key.isin({c.key for c in configs})]
        parts.append(rows.assign(axis=axis, value=value))
    return pd.concat(parts, ignore_index=True) if parts else frame.assign(axis=[], value=[])


def fig6(profile: str) -> list[RunConfig]:
    """MLP with X Xᵀ features vs the plain MLP, on same/different and ABA vs ABB."""
    models = [MODELS["MLP"], MODELS["MLP + XXᵀ"]]
    return [c for t in ("same_different", "aba_abb") for c in _grid(profile, t, models, N_PAPER, SEEDS_PAPER, PAPER)]


FIG6_BATCHES = [128, 1024, 8192]  # 1024 is figure 6's; 8192 >= every n here: full batch


def fig6_batch(profile: str) -> list[RunConfig]:
    """Figure 6's check on MLP + XXᵀ's residual test loss up to n = 1024 (chapter *Regression
    experiments*): not the frozen unseen rows (the chapter edits them), so is it the batch?  Up to
    n = 1024 every step of figure 6 is full-batch; above, a token's first-layer row gets a gradient only from
    the batch that holds its strings.  Batches of 128, 1024 and 8192 (full) at n = 256 and 1024,
    and full batch at n = 4096 (beside figure 6's 1024 there); both tasks, seeds 0–2."""
    model, tasks = [MODELS["MLP + XXᵀ"]], ("same_different", "aba_abb")
    small = [c for b in FIG6_BATCHES for t in tasks
             for c in _grid(profile, t, model, [256, 1024], SEEDS_PAPER, replace(PAPER, batch_size=b))]
    large = [c for b in FIG6_BATCHES[1:] for t in tasks
             for c in _grid(profile, t, model, [4096], SEEDS_PAPER, replace(PAPER, batch_size=b))]
    return _unique(small + large)


def fig7(profile: str) -> list[RunConfig]:
    """Mimetic initialisation of W_Q, W_K (as the authors' code builds it; its runs are
    ``fidelity_components``') vs the default initialisation vs the KQ identity."""
    models = [MODELS["transformer"], AUTHORS_MIMETIC, MODELS["transformer + KQ"]]
    return _grid(profile, "aba_abb", models, N_PAPER, SEEDS_PAPER, PAPER)


INIT_SCALES = [1.0, 2.0, 4.0]


def last_layer(profile: str) -> list[RunConfig]:
    """Figure 8 and the kernel chapter's finite-width echo: only the readout trains (random
    features regime), at several initialisation scales; n up to 2^14."""
    models = [replace(TRANSFORMER, train_last_layer_only=True, init_scale=s) for s in INIT_SCALES]
    return _grid(profile, "aba_abb", models, N_PAPER + [2 ** 14], SEEDS_PAPER, PAPER)


KQ_FAST = 10.0  # identity_scale of kq_scale: the calibration saw ×10 move the KQ curve ~4× left


def kq_scale(profile: str) -> list[RunConfig]:
    """Figures 1–2's check on the KQ identity's speed: how fast ``a_h`` can grow is set by the
    multiplier of ``a_h · X Xᵀ`` (``identity_scale``), which the paper does not give.  The KQ
    transformer with the term ×10 on both tasks, n up to 2048 (where ×1 already gets there)."""
    model = replace(MODELS["transformer + KQ"], identity_scale=KQ_FAST)
    return [c for t in ("same_different", "aba_abb")
            for c in _grid(profile, t, [model], N_PAPER[:10], SEEDS_PAPER, PAPER)]


def fig3_scale(profile: str) -> list[RunConfig]:
    """Figure 3's check on majority-6 and -8, which the transformer with both identities does not
    learn by n = 8192 in our runs (the paper says it does): the same model
    with both identity terms ×10 (``kq_scale``'s multiplier, which moved the KQ curve left on
    ABA vs ABB), n = 1024 … 8192, seeds 0–2 (the chapter reports the seeds whose runs are all in;
    seeds 0 and 1 were swept first)."""
    model = replace(MODELS["transformer + KQ & VO"], identity_scale=KQ_FAST)
    return [c for k in (6, 8)
            for c in _grid(profile, get_task("majority", k=k), [model], N_PAPER[-4:], SEEDS_PAPER, PAPER)]


def last_layer_width(profile: str) -> list[RunConfig]:
    """Figure 8's check on width: the readout of ``last_layer`` sees only ``dim`` = 64 random
    features, too few to fit n >> 64 samples; the same runs with 256 and 1024 features (init
    scales 1 and 4), one seed, a coarse n grid."""
    models = [replace(TRANSFORMER, dim=d, train_last_layer_only=True, init_scale=s)
              for d in (256, 1024) for s in (1.0, 4.0)]
    return _grid(profile, "aba_abb", models, [64, 256, 1024, 4096, 2 ** 14], [0], PAPER)


def fig1_width(profile: str) -> list[RunConfig]:
    """Figure 1's check on the plain transformer, whose test loss on same/different stays above 0.1
    up to n = 8192 in our runs: its training loss reaches 0 early and its test loss then drifts
    up, so more epochs cannot help (the chapter shows the curves).  What remains is width and n:
    the calibration's wider transformer (dim 128, 4 heads × 64, MLP 256; 4× the FLOPs) on
    n = 1024 … 8192, seed 0; and the sweep transformer one step further, at n = 2^14, on the
    paper's three seeds (the step that decides figure 1's n* if the curve crosses 0.1 there)."""
    wide = replace(TRANSFORMER, dim=128, heads=4, mlp_dim=256)
    return _unique(_grid(profile, "same_different", [wide], N_PAPER[-4:], [0], PAPER)
                   + _grid(profile, "same_different", [TRANSFORMER], [2 ** 14], SEEDS_PAPER, PAPER))


# ----------------------------------------------------------------------------- fidelity (issue 23)
# Checks 1–3 of *Why our curves differ from the paper's* (chapter *Regression experiments*);
# their verdict rules, the facts from the authors' code and the cost estimates are in
# symlib.fidelity, written before any of these runs.

IDENTITY_FAMILIES = ("KQ", "VO", "both")   # which identity terms a model has; the multiplier scales them all
MULTIPLIERS = [1.0, 10.0, 30.0, 100.0]     # identity_scale (floats: 10 and 10.0 hash differently)
N_MULTIPLIERS = N_PAPER[:8]                # 4 … 512
N_MULTIPLIERS_VO = N_PAPER[:10]            # 4 … 2048: the paper's n*(+VO) is 1024, the rule looks up to 2×


def identity_model(family: str, multiplier: float = 1.0) -> ModelConfig:
    """The sweep transformer with the identity terms of ``family`` (:data:`IDENTITY_FAMILIES`), each
    ×``multiplier``; ×1 is the figures' model (``MODELS``), ×10 of KQ is ``kq_scale``'s."""
    if family not in IDENTITY_FAMILIES:
        raise ValueError(f"unknown identity family {family!r}; allowed: {', '.join(IDENTITY_FAMILIES)}")
    return replace(TRANSFORMER, kq_identity=family in ("KQ", "both"), vo_identity=family in ("VO", "both"),
                   identity_scale=float(multiplier))


def fidelity_multipliers(profile: str) -> list[RunConfig]:
    """Check 2, how fast the identity terms can grow: KQ, VO and both, each ×1, ×10, ×30, ×100
    (``MULTIPLIERS``), on ABA vs ABB and same/different, seeds 0–2, n = 4 … 512 (VO: … 2048).
    The ×1 rows of figures 1–2 and the KQ ×10 rows of ``kq_scale`` are the same configs (stored,
    not recomputed): 450 new runs of 624, about 1.3 CPU-hours (4.3 if none stops early;
    :data:`symlib.fidelity.COST`)."""
    return _unique(c for t in ("aba_abb", "same_different") for fam in IDENTITY_FAMILIES
                   for c in _grid(profile, t, [identity_model(fam, m) for m in MULTIPLIERS],
                                  N_MULTIPLIERS_VO if fam == "VO" else N_MULTIPLIERS, SEEDS_PAPER, PAPER))


# Check 1, width and heads: two wider variants of the sweep transformer (plain and + KQ), by label.
WIDE_MODELS = {
    "dim 64, 8 heads": replace(TRANSFORMER, heads=8),                          # 4× the attention FLOPs
    "dim 128, 4 heads": replace(TRANSFORMER, dim=128, heads=4, mlp_dim=256),   # the calibration's model
}
N_WIDTH = N_PAPER[-4:]  # 1024 … 8192: where our plain transformer levels off


def fidelity_width(profile: str) -> list[RunConfig]:
    """Check 1, width and heads: does the plain transformer's floor at large n (far above the
    paper's curve; chapter *Regression experiments*) go with a wider model?  Plain and + KQ at the two widths of ``WIDE_MODELS``,
    on ABA vs ABB and same/different, n = 1024 … 8192, seeds 0–2, every run under bf16 autocast
    (adopted for new regression runs by ``fidelity_bf16``'s rule; about half the float32 cost).
    Figure 5's 8-head runs and ``fig1_width``'s, in float32, are these runs' float32 twins: six more
    bf16 pairs, at the wider widths.  Rule and cost: :func:`symlib.fidelity.width_verdict`,
    :data:`symlib.fidelity.COST`."""
    models = [replace(m, kq_identity=kq) for m in WIDE_MODELS.values() for kq in (False, True)]
    return _unique(c for t in ("aba_abb", "same_different")
                   for c in _grid(profile, t, models, N_WIDTH, SEEDS_PAPER, replace(PAPER, precision="bf16")))


AXES_N = [256, 1024, 4096]  # check 4: where figure 5's axes are read on three seeds
AXES_VALUES = {"heads": [1, 2, 4, 8, 16], "dim": [32, 64, 128, 256, 512]}  # figure 5's, and the paper's 16 and 512


def fidelity_axes(profile: str) -> list[RunConfig]:
    """Check 4, figure 5's contested axes at the paper's values: the plain transformer on ABA vs
    ABB with 1 … 16 heads (dim 64) and embedding dim 32 … 512 (2 heads), n = ``AXES_N``, seeds 0–2,
    ``PAPER``'s protocol.  Figure 5's runs (seed 0) are its seed 0 at the values figure 5 has; the
    rest is new.  float32, like figure 5, so that seed 0 and the new seeds are the same kind of run
    (bf16 would save about 2.5 CPU-hours).  Rule and cost: :func:`symlib.fidelity.axes_verdict`,
    :data:`symlib.fidelity.COST`."""
    return _unique(c for axis, values in AXES_VALUES.items() for v in values
                   for c in _grid(profile, "aba_abb", [replace(MODELS["transformer"], **{axis: v})], AXES_N,
                                  SEEDS_PAPER, PAPER))


def fidelity_components(profile: str) -> list[RunConfig]:
    """Check 3, components as the authors' code builds them: figure 2's RNN and LSTM rows and figure
    7's mimetic row as first built (``components_ours``; all ABA vs ABB) re-run with
    ``AUTHORS_MODELS`` on the same n grid (4 … 8192) and seeds (0–2): 108 runs, about 1.9 CPU-hours
    (2.5 if no run below 4096 stops early; :data:`symlib.fidelity.COST`).  Since the check, these
    are the figures' rows."""
    return _grid(profile, "aba_abb", list(AUTHORS_MODELS.values()), N_PAPER, SEEDS_PAPER, PAPER)


def components_ours(profile: str) -> list[RunConfig]:
    """The variant of check 3: figure 2's RNN and LSTM and figure 7's mimetic row as this book first
    built them (``OURS_MODELS``), on the figures' grid — stored runs, drawn beside the authors'
    construction in *Why our curves differ from the paper's* (chapter *Regression experiments*)."""
    return _grid(profile, "aba_abb", list(OURS_MODELS.values()), N_PAPER, SEEDS_PAPER, PAPER)


def fidelity_bf16(profile: str) -> list[RunConfig]:
    """The speed question before the wide re-runs: ``protocol`` and ``protocol_large`` (full
    1000-epoch runs, seed 0: transformer, + KQ, + VO, MLP, LSTM on ABA vs ABB, n = 16 … 8192)
    with every training step under bf16 autocast, faster per sample for the transformers on this
    CPU (README, *Performance*).  Adopted for regression runs only if these runs agree with
    their float32 twins (:func:`symlib.fidelity.bf16_verdict`): 16 runs, about 1.1 CPU-hours."""
    return [replace(c, train=replace(c.train, precision="bf16")) for c in protocol(profile) + protocol_large(profile)]


# ----------------------------------------------------------------------------- next-token (copy)
# Chapter: *Next-token experiments*.  The copy model is the calibration's (the authors' next-token
# model at their defaults): depth 2, 4 heads × 64, MLP 256, tied N(0, 1) embedding, final LN
# without affine [ours: the paper does not give widths]; only the embedding dimension d varies.

COPY_TRANSFORMER = ModelConfig(kind="transformer", dim=64, depth=2, heads=4, dim_head=64, mlp_dim=256)
COPY_DIMS = [32, 64, 128, 256, 512, 1024]
COPY_SCALES = [1.0, 3.0, 10.0, 30.0, 100.0]  # identity_scale of the VO term in copy_vo_scale
COPY_FULL_UNTIL = 64  # d <= this: every run trains the full 1000 epochs (the rule's ground truth)


def copy_model(d: int, vo: bool = False, kq: bool = False, scale: float = 1.0) -> ModelConfig:
    """The copy model at embedding dimension ``d``, optionally with the identity terms ×``scale``."""
    return replace(COPY_TRANSFORMER, dim=d, vo_identity=vo, kq_identity=kq, identity_scale=scale)


def _n_upto(top: int) -> list[int]:
    return [k for k in N_PAPER + [2 ** 14, 2 ** 15] if k <= top]


# The plain model runs on n = 4 … 16d, where it copies up to d = 256 (n* <= 16d); d = 512 and 1024
# cost ~13 and ~20 CPU-hours a seed at their largest n, so their runs were made on a GPU (the
# record's provenance names the device).
COPY_N_MAX = {32: 512, 64: 1024, 128: 2048, 256: 4096, 512: 8192, 1024: 16384}
COPY_ID_N_MAX = 256  # the identity models: n = 4 … this at every d ("a handful" is n <= 32)

# The early-stopping rule proposed for next-token runs (CE loss): stop once the train loss is below
# 0.01 and the validation *error* has not moved for 100 epochs.  The chapter replays it on the
# full-length runs before use (``next_token.rule_holds``): on the copy runs at d = 32 and 64 it
# moved the reported test error by up to 0.07 (test error keeps falling slowly after the
# validation error settles), so it is NOT used: every next-token run trains the full 1000 epochs.
COPY_RULE = replace(FULL, stop_train_loss=0.01, stop_metric="val_error")
COPY_RULE_ADOPTED = False
# The VO multiplier of ``copy`` and ``binding``: ``next_token.choose_vo_scale`` on ``copy_vo_scale``
# (the chapter checks that this constant is what the rule picks); None until that sweep is in.
COPY_VO_SCALE: float | None = 100.0


def _copy_train(d: int) -> TrainConfig:
    return COPY_RULE if COPY_RULE_ADOPTED and d > COPY_FULL_UNTIL else FULL


def copy(profile: str) -> list[RunConfig]:
    """Figure "copy": the plain copy model across d (n = 4 … ``COPY_N_MAX[d]`` = 16d), and — once the
    multiplier is chosen — the model + VO and + KQ & VO (n = 4 … ``COPY_ID_N_MAX``) at every d of
    ``COPY_DIMS``; seeds 0–2 (0–1 at d = 1024).  Full 1000 epochs (``COPY_RULE`` was not adopted)."""
    out = [c for d, top in COPY_N_MAX.items()
           for c in _grid(profile, "copy", [copy_model(d)], _n_upto(top), _copy_seeds(d), _copy_train(d))]
    if COPY_VO_SCALE is not None:
        for d in COPY_DIMS:
            models = [copy_model(d, vo=True, scale=COPY_VO_SCALE), copy_model(d, vo=True, kq=True, scale=COPY_VO_SCALE)]
            out += _grid(profile, "copy", models, _n_upto(COPY_ID_N_MAX), _copy_seeds(d), _copy_train(d))
    return _unique(out)


def _copy_seeds(d: int) -> list[int]:
    return SEEDS_PAPER if d <= 512 else SEEDS_PAPER[:2]


COPY_WIDE_DIMS = [2048, 4096]
COPY_WIDE_N = [16, 64, 256, 1024, 4096, 16384]  # a coarse grid (×4): n* is known to a factor 4 here


def copy_wide(profile: str) -> list[RunConfig]:
    """The paper's largest d, on a GPU: the plain copy model at d = 2048 and 4096 on a coarse
    grid (``COPY_WIDE_N``, seed 0), and the model + VO (× ``COPY_VO_SCALE``) on n = 4 … 256,
    seeds 0–1 — test error at fixed n as d grows, and whether the VO fix still holds.  Not part
    of ``copy``'s n* fit (one seed, a coarser grid); the chapter reads it beside it."""
    out = _grid(profile, "copy", [copy_model(d) for d in COPY_WIDE_DIMS], COPY_WIDE_N, [0], FULL)
    if COPY_VO_SCALE is not None:
        for d in COPY_WIDE_DIMS:
            out += _grid(profile, "copy", [copy_model(d, vo=True, scale=COPY_VO_SCALE)], _n_upto(COPY_ID_N_MAX),
                         _copy_seeds(d), FULL)
    return _unique(out)


COPY_PROTOCOL_N = [64, 256, 1024]


BINDING_DIM = 64
BINDING_N = [2 ** i for i in range(4, 13)]  # 16 … 4096
BINDING_N_IDENTITY = [8192, 16384]          # + KQ & VO only: the rule's "below 5 % by n = 16384"


def binding(profile: str) -> list[RunConfig]:
    """Variable binding: the copy model at d = ``BINDING_DIM``, plain and + KQ & VO (×
    ``COPY_VO_SCALE``, once chosen), n = ``BINDING_N``, seeds 0–1, the full 1000 epochs; the model
    + KQ & VO also at ``BINDING_N_IDENTITY``, where the verdict rule looks for its error below 5 %."""
    plain = copy_model(BINDING_DIM)
    out = _grid(profile, "variable_binding", [plain], BINDING_N, SEEDS_PAPER[:2], _copy_train(BINDING_DIM))
    if COPY_VO_SCALE is not None:
        both = copy_model(BINDING_DIM, vo=True, kq=True, scale=COPY_VO_SCALE)
        out += _grid(profile, "variable_binding", [both], BINDING_N + BINDING_N_IDENTITY, SEEDS_PAPER[:2],
                     _copy_train(BINDING_DIM))
    return _unique(out)


def copy_protocol(profile: str) -> list[RunConfig]:
    """Full 1000-epoch runs of the plain copy model at d = 256 and 1024 (n = 64, 256, 1024; seed 0)
    — with the full-length runs of ``copy`` at d = 32 and 64, the ground truth against which an
    early-stopping rule for next-token runs is checked before it is used at larger d; at d = 1024,
    n = 1024 the calibration saw a run that does not fit its training set."""
    return _grid(profile, "copy", [copy_model(256), copy_model(1024)], COPY_PROTOCOL_N, [0], FULL)


def copy_bf16(profile: str) -> list[RunConfig]:
    """``copy_protocol`` with training steps under bf16 autocast (faster per step on this CPU;
    README, *Performance*): adopted for large d only if n* and fit agree with float32."""
    return _grid(profile, "copy", [copy_model(256), copy_model(1024)], COPY_PROTOCOL_N, [0],
                 replace(FULL, precision="bf16"))


def copy_control(profile: str) -> list[RunConfig]:
    """The labelled control of the fit question: ``copy_protocol`` with the logits scaled by
    1/√d (``readout_scale``), so that their spread at initialisation is 1 instead of √d.  If the
    plain model fits (and copies) at large d only then, the failure there is an optimisation
    artefact of the N(0, 1) tied readout, not the inverse scaling law."""
    models = [replace(copy_model(d), readout_scale=d ** -0.5) for d in (256, 1024)]
    return _grid(profile, "copy", models, COPY_PROTOCOL_N, [0], FULL)


def copy_vo_scale(profile: str) -> list[RunConfig]:
    """How fast must ``b_h`` grow?  The copy model + VO with the identity term ×1 … ×100
    (``COPY_SCALES``) at d = 64, 256, 1024, n = 4 … 128, seed 0, full 1000 epochs — the choice of
    the multiplier used by ``copy`` (the paper does not give it)."""
    models = [copy_model(d, vo=True, scale=s) for d in (64, 256, 1024) for s in COPY_SCALES]
    return _grid(profile, "copy", models, [4, 8, 16, 32, 64, 128], [0], FULL)


EXPERIMENTS = {
    "protocol": protocol,
    "protocol_large": protocol_large,
    "fig1": fig1,
    "fig2": fig2,
    "fig3": fig3,
    "fig3_scale": fig3_scale,
    "fig4": fig4,
    "fig5": fig5,
    "fig6": fig6,
    "fig6_batch": fig6_batch,
    "fig7": fig7,
    "last_layer": last_layer,
    "last_layer_width": last_layer_width,
    "kq_scale": kq_scale,
    "fig1_width": fig1_width,
    "copy": copy,
    "copy_wide": copy_wide,
    "copy_protocol": copy_protocol,
    "copy_bf16": copy_bf16,
    "copy_control": copy_control,
    "binding": binding,
    "copy_vo_scale": copy_vo_scale,
    "fidelity_width": fidelity_width,
    "fidelity_multipliers": fidelity_multipliers,
    "fidelity_axes": fidelity_axes,
    "fidelity_components": fidelity_components,
    "components_ours": components_ours,
    "fidelity_bf16": fidelity_bf16,
}


def experiment(name: str, profile: str = "paper", seeds=None) -> list[RunConfig]:
    """The configs of experiment ``name`` in ``profile`` (only ``seeds`` if given)."""
    check_profile(profile)
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    configs = EXPERIMENTS[name](profile)
    return configs if seeds is None else [c for c in configs if c.seed in set(seeds)]


def stored(name: str, profile: str = "paper", seeds=None, store=None):
    """``(frame, total)``: the runs of experiment ``name`` the store already holds (computing
    nothing), and how many runs the experiment has — for figures whose sweep is still running."""
    from .store import RunStore
    store = store or RunStore()
    configs = experiment(name, profile, seeds)
    return results_frame(store.load(configs)), len({c.key for c in configs})


def seed_status(name: str, profile: str = "paper", store=None) -> dict[int, tuple[int, int]]:
    """``{seed: (runs stored, runs in the grid)}`` of experiment ``name`` — which seeds a figure
    can report in full while its sweep is still running."""
    from .store import RunStore
    store = store or RunStore()
    by_seed: dict[int, set[str]] = {}
    for c in experiment(name, profile):
        by_seed.setdefault(c.seed, set()).add(c.key)
    return {seed: (sum(k in store for k in keys), len(keys)) for seed, keys in sorted(by_seed.items())}


def results(name: str, profile: str = "paper", seeds=None, store=None, workers=None):
    """Tidy frame (one row per run) of experiment ``name``, computing the runs the store lacks
    (in this process for the smoke profile, whose runs are shorter than a worker's start-up)."""
    from .store import RunStore
    from .sweep import run_sweep
    store = store or RunStore()
    configs = experiment(name, profile, seeds)
    if workers is None and profile == "smoke":
        workers = 1
    return results_frame(run_sweep(configs, store, workers=workers))


def figure_runs(name: str, profile: str = "paper", seeds=None, complete=(), store=None):
    """``(frame, complete)``: a figure's runs over the seeds whose grid is complete in the store.

    Experiments named in ``complete`` are completed first (their missing runs trained, see
    :func:`results`).  Otherwise a seed still being swept is left out until all its runs are in, so
    a chapter's numbers change only when a seed completes; a figure with no complete seed is shown
    from whatever is stored and marked incomplete (no verdict).  ``seeds``: only these (None:
    every seed).  Prints which seeds are still partial."""
    if name in complete:
        return results(name, profile, seeds, store=store), True
    by_seed = {s: v for s, v in seed_status(name, profile, store).items() if seeds is None or s in seeds}
    done = [s for s, (have, total) in by_seed.items() if have == total]
    for s, (have, total) in by_seed.items():
        if 0 < have < total:
            print(f"{name}: seed {s} has {have} of {total} runs so far" + (" (not shown)" if done else ""))
    if done:
        return stored(name, profile, done, store)[0], True
    return stored(name, profile, list(by_seed), store)[0], False


def chapter_runs(name: str, profile: str = "paper"):
    """``(frame, total)`` for a chapter whose sweeps take CPU-hours (*Next-token experiments*): in
    the paper profile the runs of experiment ``name`` the store holds and the size of its grid —
    the chapter never trains (``python -m symlib sweep NAME`` does); in the smoke profile its tiny
    grid, trained now."""
    if check_profile(profile) == "paper":
        return stored(name)
    frame = results(name, "smoke")
    return frame, len(frame)

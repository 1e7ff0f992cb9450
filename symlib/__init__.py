"""symlib — the library of the companion book to *When can transformers reason with abstract
symbols?* (Boix-Adserà et al., ICLR 2024).

One idea per module:

* :mod:`symlib.templates`  templates, wildcards, substitution, matching, data diversity
* :mod:`symlib.tasks`      the registry of the paper's tasks
* :mod:`symlib.data`       tensors with disjoint train / validation / test alphabets
* :mod:`symlib.attention`  attention with the ``kq_identity`` / ``vo_identity`` switches
* :mod:`symlib.models`     transformer, next-token transformer, MLP, MLP + XXᵀ, RNN, LSTM
* :mod:`symlib.runs`       what a run is, as plain data: configs, config hash, :class:`RunResult` (no Lightning)
* :mod:`symlib.training`   Lightning training of one run: :func:`fit` -> :class:`RunResult`
* :mod:`symlib.store`      the run store: one JSON record per run, keyed by config hash
* :mod:`symlib.sweep`      grids of runs, resumable, local processes or a Dask cluster
* :mod:`symlib.experiments` every sweep of the book by name, in ``paper`` and ``smoke`` profiles
* :mod:`symlib.kernel`     the transformer random-features kernel κ, K_trans, template matrix N, kernel regression
* :mod:`symlib.symbolic`   computer algebra (Wick's theorem) for κ's Taylor coefficients
* :mod:`symlib.mlp_failure` the MLP-failure mechanism: frozen unseen rows, equivariance, the two-sample test
* :mod:`symlib.next_token_theory` next-token probes: unseen embeddings against the span of training updates
* :mod:`symlib.checks`     the argument checks the configs share
* :mod:`symlib.plots`      sample-efficiency figures and n* summaries
* :mod:`symlib.status`     the reproduction-status records
* :mod:`symlib.cli`        ``python -m symlib train | sweep | book``
"""

from .data import DataConfig, make_data
from .models import ModelConfig, build_model, model_for
from .runs import VERSION as __version__
from .runs import RunConfig, RunResult, TrainConfig, run_config
from .tasks import REGISTRY, from_spec, get_task
from .templates import data_diversity, make_task, matches

__all__ = ["DataConfig", "make_data", "ModelConfig", "build_model", "model_for", "REGISTRY", "from_spec",
           "get_task", "data_diversity", "make_task", "matches", "RunConfig", "RunResult",
           "TrainConfig", "fit", "run_config"]


def __getattr__(name: str):
    """``symlib.fit`` (and ``symlib.training``) are imported on first use, so that ``import symlib``
    (and reading records) does not load Lightning."""
    if name in ("fit", "training"):
        import importlib
        training = importlib.import_module(".training", __name__)
        return training.fit if name == "fit" else training
    raise AttributeError(f"module 'symlib' has no attribute {name!r}")

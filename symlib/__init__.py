"""symlib — the library of the companion book to *When can transformers reason with abstract
symbols?* (Boix-Adserà et al., ICLR 2024).

One idea per module:

* :mod:`symlib.templates`  templates, wildcards, substitution, matching, data diversity
* :mod:`symlib.tasks`      the registry of the paper's tasks
* :mod:`symlib.data`       tensors with disjoint train / validation / test alphabets
* :mod:`symlib.attention`  attention with the ``kq_identity`` / ``vo_identity`` switches
* :mod:`symlib.models`     transformer, next-token transformer, MLP, MLP + XXᵀ, RNN, LSTM
* :mod:`symlib.training`   Lightning training of one run: :func:`fit` -> :class:`RunResult`
* :mod:`symlib.store`      the run store: one JSON record per run, keyed by config hash
* :mod:`symlib.sweep`      grids of runs, resumable, local processes or a Dask cluster
* :mod:`symlib.experiments` every sweep of the book by name, in ``paper`` and ``smoke`` profiles
* :mod:`symlib.kernel`     the transformer random-features kernel κ, K_trans, template matrix N, kernel regression
* :mod:`symlib.symbolic`   computer algebra (Wick's theorem) for κ's Taylor coefficients
* :mod:`symlib.equivariance` the MLP-failure mechanism: frozen unseen rows, equivariance, the two-sample test
* :mod:`symlib.probes`     next-token probes: unseen embeddings against the span of training updates
* :mod:`symlib.plots`      sample-efficiency figures and n* summaries
* :mod:`symlib.status`     the reproduction-status records
* :mod:`symlib.cli`        ``python -m symlib train | sweep | book``
"""

__version__ = "0.1.0"

from .data import DataConfig, make_data  # noqa: E402
from .models import ModelConfig, build_model  # noqa: E402
from .tasks import REGISTRY, from_spec, get_task  # noqa: E402
from .templates import data_diversity, make_task, matches  # noqa: E402
from .training import RunConfig, RunResult, TrainConfig, fit, run_config  # noqa: E402

__all__ = ["DataConfig", "make_data", "ModelConfig", "build_model", "REGISTRY", "from_spec",
           "get_task", "data_diversity", "make_task", "matches", "RunConfig", "RunResult",
           "TrainConfig", "fit", "run_config"]

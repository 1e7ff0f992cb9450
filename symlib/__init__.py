"""symlib — the library of the companion book to *When can transformers reason with abstract
symbols?* (Boix-Adserà et al., ICLR 2024).

One idea per module; the README's two module tables (shared modules, and one module per chapter)
list them all, and a test keeps those tables in step with this folder.  The names a reader
needs first are imported here: tasks and data (:func:`get_task`, :func:`make_data`), models
(:func:`build_model`, :func:`model_for`), what a run is (:class:`RunConfig`, :class:`RunResult`)
and :func:`fit`, which trains one.
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

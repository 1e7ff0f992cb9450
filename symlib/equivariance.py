"""Deprecated alias of :mod:`symlib.mlp_failure` (the module was renamed to match its chapter,
*MLPs cannot reason with unseen symbols*).  Kept only so that callers not yet updated — the
*Regression experiments* chapter — keep working; import :mod:`symlib.mlp_failure` instead."""

from .mlp_failure import *  # noqa: F401,F403
from .mlp_failure import data_dir  # noqa: F401  (explicit: used by chapters/regression.ipynb)

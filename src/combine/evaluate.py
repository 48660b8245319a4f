"""Evaluation of a model and the classical baselines (kept importable: see :mod:`combine.evaluation`).

The code lives in the package :mod:`combine.evaluation` (one module per job); this module
re-exports its names for the code and scripts that import ``combine.evaluate``.
"""

from .evaluation import *  # noqa: F401,F403
from .evaluation import __doc__ as _package_doc  # noqa: F401
from .evaluation import _clean  # noqa: F401
from .evaluation.specs import __all__ as _specs_all
from .evaluation.cell import __all__ as _cell_all
from .evaluation.loop import __all__ as _loop_all
from .evaluation.epochs import __all__ as _epochs_all
from .evaluation.fullsky import __all__ as _fullsky_all
from .evaluation.report import __all__ as _report_all

__all__ = _specs_all + _cell_all + _loop_all + _epochs_all + _fullsky_all + _report_all

"""Linear weights laid out for the product with one message's sparse features.

A message's features are a sparse row ``x``; a linear classifier scores it as ``x @ coef.T``.
scikit-learn and our detector keep ``coef`` one row a class (C order), so ``coef.T`` is not
contiguous, and scipy's sparse product copies it whole on every call (``ravel``): for the intent
classifier (22 intents x 100,000 features) and the danger kinds (10 x 120,000), 2 to 4 ms a
message that did nothing (cProfile on the held-out intent set, docs/benchmarks.md). Stored in
Fortran order, the same numbers make ``coef.T`` contiguous: no copy, the same scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def for_sparse_rows(coef: np.ndarray) -> np.ndarray:
    """``coef`` (classes x features) in Fortran order: ``coef.T`` is then C-contiguous."""
    return np.asfortranarray(coef)


def lay_out(estimator: Any) -> Any:
    """A fitted linear estimator, or a pipeline ending in one, with its ``coef_`` laid out by
    ``for_sparse_rows``; anything else unchanged. Returns ``estimator``."""
    for step in getattr(estimator, "steps", None) or [(None, estimator)]:
        model = step[1]
        coef = getattr(model, "coef_", None)
        if isinstance(coef, np.ndarray) and coef.ndim == 2:
            model.coef_ = for_sparse_rows(coef)
    return estimator

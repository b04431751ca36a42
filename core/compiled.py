"""The compiled booster: the fitted HistGradientBoosting model as a Treelite model, for one record.

Why: sklearn's `predict_proba` on one row pays a per-tree Python/OpenMP overhead (~2.7 ms for 200
trees here, 97 % of the per-record cost). Treelite's built-in predictor (GTIL) walks the same trees
in C++ for ~50 µs. Chosen by measurement (STACK.md, `make bench`): ONNX Runtime is faster per row
(~14 µs) but computes in float32 (|Δp| up to 3e-7, so a flight whose probability sits at the
threshold can flip), adds ~117 MB and needs an older protobuf; tl2cgen needs gcc at training time.
Treelite adds ~3 MB and, built as below, gives **bit-identical** probabilities.

Exactness: sklearn computes `baseline + t1 + t2 + …` left to right; Treelite sums the trees and adds
the base score last, which rounds differently (|Δp| ~1e-15; the model's threshold is itself one of
the validation probabilities, so even that can flip a `late` decision). Folding the baseline into
the first tree's leaves and importing with a zero base score makes Treelite's float64 sum the same
sequence of additions; the margin then goes through the same `expit` sklearn uses. The parity test
(tests/model/test_compiled.py) checks every 2013 flight for equality, and `compile_booster` checks a
sample before it returns, so a future sklearn/Treelite change cannot silently break it.

Batches stay on sklearn: its vectorised predictor is ~2.5× faster than GTIL over 300k rows.
Trust: a Treelite checkpoint is parsed by native code; like the skops Pipeline it is loaded only
from the registry's artifact store, which only our training pipeline writes (see core/registry.py).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

TREELITE_ARTIFACT = "driftlight/compiled/booster.treelite"
FORMAT = "treelite-gtil"


class CompilationError(RuntimeError):
    """The booster could not be compiled exactly (unsupported model or a parity mismatch)."""


def compile_booster(estimator: Any, check_rows: np.ndarray | None = None) -> bytes:
    """Serialised Treelite model of a fitted binary `HistGradientBoostingClassifier`.

    `check_rows` (feature matrix, shape (n, n_features)): rows on which the compiled probabilities
    must equal sklearn's exactly; raises `CompilationError` otherwise.
    """
    import treelite.sklearn

    if getattr(estimator, "n_trees_per_iteration_", None) != 1:
        raise CompilationError("only a binary HistGradientBoostingClassifier is compiled")
    folded = copy.deepcopy(estimator)
    nodes = folded._predictors[0][0].nodes
    leaves = nodes["is_leaf"].astype(bool)
    baseline = float(np.asarray(folded._baseline_prediction).ravel()[0])
    nodes["value"][leaves] = baseline + nodes["value"][leaves]
    folded._baseline_prediction = np.zeros_like(folded._baseline_prediction)
    # The importer casts each categorical feature's category list to int64; sklearn lists NaN
    # (missing) last, which casts with a RuntimeWarning. Missing values never use that table
    # (they follow the split's missing direction), as the parity test over every flight shows.
    with np.errstate(invalid="ignore"):
        model = treelite.sklearn.import_model(folded)
    blob = bytes(model.serialize_bytes())
    if check_rows is not None and len(check_rows):
        compiled = CompiledBooster.from_bytes(blob)
        X = np.asarray(check_rows, dtype="float64")
        got, want = compiled.predict(X), estimator.predict_proba(X)[:, 1]
        if not np.array_equal(got, want):
            worst = float(np.max(np.abs(got - want)))
            n = int((got != want).sum())
            raise CompilationError(f"compiled booster differs from sklearn on {n} rows (max |dp| {worst:.3g})")
    return blob


class CompiledBooster:
    """A loaded Treelite model: P(late) for one feature vector or a matrix, single-threaded."""

    def __init__(self, model: Any) -> None:
        from scipy.special import expit
        from treelite import gtil

        self._model = model
        self._gtil = gtil
        self._expit = expit
        self.n_features = int(model.num_feature)

    @classmethod
    def from_bytes(cls, blob: bytes) -> CompiledBooster:
        import treelite

        return cls(treelite.Model.deserialize_bytes(blob))

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds), shape (n,), for a float64 matrix of shape (n, n_features)."""
        out = self._gtil.predict(self._model, X, nthread=1, pred_margin=True)
        return np.asarray(out, dtype="float64").reshape(len(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(late), shape (n,): the same `expit` of the same margin as sklearn's `predict_proba`."""
        return self._expit(self.margin(np.asarray(X, dtype="float64")))

    def predict_one(self, x: np.ndarray) -> float:
        """P(late) for one feature vector of shape (n_features,)."""
        return float(self._expit(self.margin(x.reshape(1, -1))[0]))

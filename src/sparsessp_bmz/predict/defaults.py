"""The default plan and engine of `sparsessp-bmz predict`, chosen by measurement.

`benchmarks/bench_predict_plans.py` (trained demo model, held-out synthetic volumes, 2 CPU cores)
decides them; its tables are in the README (Measured). In short: y/x windows larger than the
training patch lose no accuracy and cut the work of overlapping windows, and ONNX Runtime is the
fastest engine whose output equals eager PyTorch within float tolerance.
"""

from __future__ import annotations

from sparsessp_bmz.predict.runners import Engine
from sparsessp_bmz.predict.windows import fitted_window
from sparsessp_bmz.spec import ModelSpec

DEFAULT_ENGINE: Engine = "onnx"
DEFAULT_OVERLAP = 0.25
#: y/x window = this many times the training patch's, shrunk to the field.
DEFAULT_YX_SCALE = 4


def default_window(spec: ModelSpec, sparse_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The default window (target voxels) for a sparse field of `sparse_shape`."""
    return fitted_window(spec, sparse_shape, DEFAULT_YX_SCALE, DEFAULT_OVERLAP)

"""Training SparseSSP networks with PyTorch Lightning: configs, loop, checkpoints, the matrix.

Submodules are imported explicitly (`training.config`, `training.run`, `training.checkpoint`) so
that reading a config or a checkpoint does not import Lightning.
"""

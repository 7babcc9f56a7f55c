"""SparseSSP models for 3D subcellular structure prediction from sparse transmitted-light stacks,
trained and published as BioImage Model Zoo packages.

Only torch is imported by `sparsessp_bmz.nets`; everything heavier is imported lazily where used,
so that a bioimage.io `pytorch_state_dict` package can import the architecture with torch alone.
"""

__version__ = "0.1.0"

"""Data: manifests of real or simulated z-stacks, sparse sampling on a fixed grid, training patches.

Submodules are imported explicitly (`sparsessp_bmz.data.dataset`, `.volumes`, `.sparse`, ...) so
that importing one piece does not pull in bioio, torch or the simulator.
"""

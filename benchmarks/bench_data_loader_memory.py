"""Loader memory does not grow with the data set: peak RSS sampling from 10 vs 100 volumes.

Run: .venv/bin/python benchmarks/bench_data_loader_memory.py
Each size runs in a fresh process so peaks do not mix.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPE = (48, 160, 160)
CACHE_MB = 64.0
SAMPLES = 400


def _measure(manifest: Path, volumes: int) -> None:
    from sparsessp_bmz.data.config import DataSettings
    from sparsessp_bmz.data.dataset import SparsePatchDataset
    from sparsessp_bmz.data.manifest import read_manifest

    rows = read_manifest(manifest)[:volumes]
    settings = DataSettings(
        manifest=manifest, cache_mb=CACHE_MB, samples_per_epoch=SAMPLES, patches_per_volume=4
    )
    dataset = SparsePatchDataset(rows, settings, patch=(32, 128, 128), ratio=4)
    for index in range(len(dataset)):
        dataset[index]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{volumes:4d} volumes: peak RSS {peak_mb:.0f} MB (cache budget {CACHE_MB:.0f} MB)")


def main() -> None:
    from sparsessp_bmz.data.config import SimulationSettings
    from sparsessp_bmz.data.simulate.writer import simulate

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as folder:
        settings = SimulationSettings(cells=100, structures=("dna",), shape=SHAPE, workers=2)
        manifest = simulate(settings, Path(folder))
        for volumes in (10, 100):
            subprocess.run([sys.executable, __file__, str(manifest), str(volumes)], check=True)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _measure(Path(sys.argv[1]), int(sys.argv[2]))
    else:
        main()

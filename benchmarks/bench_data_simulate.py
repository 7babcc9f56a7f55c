"""Simulator speed: seconds to write N fields of cells (default: the issue's 100 x 64x256x256).

Run: .venv/bin/python benchmarks/bench_data_simulate.py [--cells 100] [--shape 64x256x256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from sparsessp_bmz.cli.parsing import parse_shape
from sparsessp_bmz.data.config import SimulationSettings
from sparsessp_bmz.data.simulate.writer import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--shape", default="64x256x256")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    settings = SimulationSettings(
        cells=args.cells, shape=parse_shape(args.shape, "--shape"), workers=args.workers
    )
    out = Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    try:
        start = time.perf_counter()
        manifest = simulate(settings, out)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(out)
    print(
        f"simulated {args.cells} fields of {args.shape} x {len(settings.structures) + 1} channels "
        f"with {args.workers} worker(s) in {seconds:.1f} s "
        f"({seconds / args.cells:.2f} s/field, {size / 2**30:.2f} GiB, manifest {manifest.name})"
    )


if __name__ == "__main__":
    main()

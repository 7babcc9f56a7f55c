"""Peak memory of slab-bounded whole-field prediction on a field far larger than a window.

A dense field of 128 x 2048 x 2048 target voxels (r = 2: a 64 x 2048 x 2048 sparse TL stack,
1 GiB of float32) is written lazily, band by band, to OME-Zarr; `sparsessp-bmz predict`'s
library path then predicts it OME-Zarr to OME-Zarr (2 GiB of output) in a subprocess whose peak
RSS (maxrss) is its own. The network is the demo width (0.25, U = 32) 3to2d, untrained: memory
and speed do not depend on the weights. Target: peak RSS <= 2 GB. The table also shows the RSS
the whole-array blend would need for its sum, weight and output arrays alone.

Run: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_predict_memory.py [--small]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sparsessp_bmz.cli.parsing import parse_shape
from sparsessp_bmz.predict.defaults import DEFAULT_OVERLAP, default_window

GRID_UM = (0.29, 0.29, 0.29)


def _spec(ratio: int):  # type: ignore[no-untyped-def]
    from sparsessp_bmz.spec import ModelSpec

    return ModelSpec(
        organelle="dna", ratio=ratio, topology="3to2d", width=0.25, units=32,
        patch=(8 * ratio, 64, 64),
    )  # fmt: skip


def write_input(path: Path, sparse_shape: tuple[int, int, int], ratio: int) -> None:
    """A smooth random sparse stack, generated and written 64 rows at a time."""
    from sparsessp_bmz.imageio import OmeZarrOutput

    rng = np.random.default_rng(0)
    depth, height, width = sparse_shape
    x = np.linspace(0, 40, width, dtype=np.float32)
    with OmeZarrOutput(path, sparse_shape, (ratio * GRID_UM[0], *GRID_UM[1:])) as output:
        for y0 in range(0, height, 64):
            rows = min(64, height - y0)
            y = np.linspace(y0, y0 + rows, rows, dtype=np.float32)[None, :, None] / 50
            z = np.arange(depth, dtype=np.float32)[:, None, None] / 7
            band = np.sin(x[None, None, :] / 3 + y) * np.cos(z + y) + 0.3 * rng.standard_normal(
                (depth, rows, width), dtype=np.float32
            )
            output.write_rows(y0, band.astype(np.float32))


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Predict the field in this process; its peak RSS is the measurement."""
    import torch

    from sparsessp_bmz.nets import build_net
    from sparsessp_bmz.predict.batch import Job, PredictOptions, predict_jobs
    from sparsessp_bmz.predict.models import PredictionModel
    from sparsessp_bmz.trained import TrainedModel

    spec = _spec(args.ratio)
    torch.manual_seed(0)
    model = PredictionModel(TrainedModel(spec=spec, net=build_net(spec).eval()), Path("bench"))
    job = Job(Path(args.input), 0, Path(args.output))
    overlap = DEFAULT_OVERLAP if args.overlap is None else args.overlap
    options = PredictOptions(engine=args.engine, overlap=overlap)
    start = time.perf_counter()
    (outcome,) = predict_jobs(model, [job], options, progress=sys.stderr.isatty())
    if outcome.status != "written":
        raise SystemExit(f"prediction failed: {outcome.detail}")
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128x2048x2048", help="dense target D x H x W")
    parser.add_argument("--small", action="store_true", help="quick check: 32x512x512")
    parser.add_argument("--ratio", type=int, default=2)
    parser.add_argument("--engine", default="onnx")
    parser.add_argument(
        "--overlap",
        type=float,
        help="window overlap (default: predict's); memory barely depends on it, time does",
    )
    parser.add_argument("--workdir", type=Path, help="where the OME-Zarr files go (temporary)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from rich.console import Console
    from rich.table import Table

    from sparsessp_bmz.predict.windows import plan_windows, resolve_window

    depth, height, width = parse_shape("32x512x512" if args.small else args.shape, "--shape")
    sparse_shape = (depth // args.ratio, height, width)
    spec = _spec(args.ratio)
    plan = plan_windows(
        sparse_shape,
        resolve_window(spec, default_window(spec, sparse_shape)),
        DEFAULT_OVERLAP if args.overlap is None else args.overlap,
    )
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        source, target = Path(tmp) / "tl.ome.zarr", Path(tmp) / "prediction.ome.zarr"
        start = time.perf_counter()
        write_input(source, sparse_shape, args.ratio)
        written = time.perf_counter() - start
        command = [sys.executable, __file__, "--worker", "--ratio", str(args.ratio),
                   "--engine", args.engine, "--input", str(source),
                   "--output", str(target)]  # fmt: skip
        if args.overlap is not None:
            command += ["--overlap", str(args.overlap)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode:
            raise SystemExit(f"worker failed (exit {done.returncode})")
        row = json.loads(done.stdout.strip().splitlines()[-1])
    dense_voxels = depth * height * width
    plan_overlap = DEFAULT_OVERLAP if args.overlap is None else args.overlap
    table = Table(
        title=f"Slab-bounded prediction of a {depth}x{height}x{width} dense field (r={args.ratio}, "
        f"3to2d width 0.25, U=32, engine {args.engine}, overlap {plan_overlap}), OME-Zarr in "
        "and out"
    )
    headers = ("sparse input (GB)", "output (GB)", "windows", "window (sparse)",
               "write input (s)", "predict (s)", "peak RSS (MB)",
               "whole-array blend arrays alone (MB)")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="right")
    table.add_row(
        f"{4 * dense_voxels / args.ratio / 1e9:.2f}", f"{4 * dense_voxels / 1e9:.2f}",
        str(plan.count), "x".join(map(str, plan.input_window)), f"{written:.0f}",
        f"{row['seconds']:.0f}", f"{row['peak_rss_mb']:.0f}", f"{3 * 4 * dense_voxels / 2**20:.0f}",
    )  # fmt: skip
    Console(width=200).print(table)


if __name__ == "__main__":
    main()

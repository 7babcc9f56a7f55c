"""Whole-volume prediction of an AllenCell-sized field of view, per topology.

The field is 64 x 232 x 344 target voxels (AllenCell at 0.29 um), predicted from its r = 2 sparse
stack with the Gaussian sliding window (window 32x128x128, overlap 0.5), prefix interpolation and
projection in 3D. Each topology runs in its own subprocess so that its peak memory (maxrss) is its
own. Reported per topology:

* wall time of `predict_volume` and the number of windows;
* peak RSS of the subprocess, and its growth during prediction (accumulators + activations);
* achieved GFLOP/s (2 x MACs per window x windows / wall time) beside a large fp32 matmul measured
  in the same run with the same threads: how far convolutions sit from the machine's peak;
* sliding / forward: the sliding-window time over the time of pure forward passes covering the same
  number of output voxels (volume voxels / window voxels windows): the cost of overlap + blending;
  and over the forward passes of its own windows: the cost of tiling and blending alone.

Paper width is slow on a small CPU; `--width` narrows the networks and the table says what ran.
Run: .venv/bin/python benchmarks/bench_predict.py [--width 1.0] [--topologies 3d,3to2d]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from pydantic import ValidationError

from sparsessp_bmz.cli.parsing import parse_shape
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.nets.complexity import measure
from sparsessp_bmz.predict import plan_windows, predict_volume, resolve_window
from sparsessp_bmz.spec import TOPOLOGIES, ModelSpec


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` fp32 GEMM throughput: the practical peak of this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class TimedForward(torch.nn.Module):
    """The network, with the seconds spent inside its forward passes added up.

    Timing the forward passes inside the sliding-window run itself (instead of separate runs)
    keeps the ratio honest on a shared CPU: both parts see the same load.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.net(x)
        self.seconds += time.perf_counter() - start
        return out


def run_topology(args: argparse.Namespace) -> dict[str, float]:
    """One topology in this process (called in a subprocess by `main`)."""
    torch.manual_seed(0)
    spec = ModelSpec(
        organelle="bench",
        ratio=args.ratio,
        topology=args.worker,
        width=args.width,
        units=args.units,
        patch=parse_shape(args.window, "--window"),
    )
    net = build_net(spec).eval()
    depth, height, width = parse_shape(args.shape, "--shape")
    sparse = np.random.default_rng(0).normal(size=(depth // spec.ratio, height, width))
    sparse = sparse.astype(np.float32)
    input_window = resolve_window(spec, None)
    plan = plan_windows(sparse.shape, input_window, args.overlap)  # type: ignore[arg-type]
    first = sparse[: input_window[0], : input_window[1], : input_window[2]]
    rss_setup = _maxrss_mb()
    with torch.inference_mode():
        net(torch.from_numpy(first[None, None]))  # warm-up: allocator and kernels
    timed = TimedForward(net)
    wall = _timed(
        lambda: predict_volume(
            timed, spec, sparse, overlap=args.overlap, batch_size=args.batch_size
        )
    )
    forward = timed.seconds / plan.count
    macs = measure(spec).gmacs * 1e9
    window_voxels = float(np.prod(spec.patch))
    volume_voxels = float(depth * height * width)
    return {
        "windows": plan.count,
        "wall_s": wall,
        "forward_per_window_s": forward,
        "gflops": 2 * macs * plan.count / wall / 1e9,
        "gmacs_per_window": macs / 1e9,
        "peak_rss_mb": _maxrss_mb(),
        "rss_growth_mb": _maxrss_mb() - rss_setup,
        "sliding_over_forward": wall / (forward * volume_voxels / window_voxels),
        "sliding_over_window_forwards": wall / (forward * plan.count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--width", type=float, default=1.0, help="1.0 = paper width")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--ratio", type=int, default=2)
    parser.add_argument("--shape", default="64x232x344", help="target D x H x W")
    parser.add_argument("--window", default="32x128x128", help="target window D x H x W")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        try:
            print(json.dumps(run_topology(args)))
        except ValidationError as err:  # a width/topology combination the spec refuses
            sys.exit(err.errors()[0]["msg"])
        return

    from rich.console import Console
    from rich.table import Table

    peak = matmul_gflops()
    rows: dict[str, dict[str, float]] = {}
    failures: dict[str, str] = {}
    for topology in args.topologies.split(","):
        command = [sys.executable, __file__, *sys.argv[1:], "--worker", topology]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            failures[topology] = (done.stderr.strip().splitlines() or ["crashed"])[-1]
            continue
        rows[topology] = json.loads(done.stdout.strip().splitlines()[-1])
    table = Table(
        title=(
            f"Whole-volume prediction {args.shape} (r={args.ratio}, window {args.window}, "
            f"overlap {args.overlap}, batch {args.batch_size}), width {args.width}, "
            f"U={args.units}, {torch.get_num_threads()} threads; "
            f"fp32 matmul peak {peak:.1f} GFLOP/s"
        )
    )
    headers = (
        "topology", "windows", "GMACs/window", "wall (s)", "GFLOP/s", "% of matmul",
        "peak RSS (MB)", "over net+input (MB)", "sliding/forward (equal voxels)",
        "sliding/forward (same windows)",
    )  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header == "topology" else "right")
    for topology, row in rows.items():
        table.add_row(
            topology,
            str(row["windows"]),
            f"{row['gmacs_per_window']:.2f}",
            f"{row['wall_s']:.1f}",
            f"{row['gflops']:.1f}",
            f"{100 * row['gflops'] / peak:.0f}",
            f"{row['peak_rss_mb']:.0f}",
            f"{row['rss_growth_mb']:.0f}",
            f"{row['sliding_over_forward']:.2f}",
            f"{row['sliding_over_window_forwards']:.2f}",
        )
    console = Console(width=200)
    console.print(table)
    for topology, reason in failures.items():
        console.print(f"{topology}: not run: {reason}")


if __name__ == "__main__":
    main()

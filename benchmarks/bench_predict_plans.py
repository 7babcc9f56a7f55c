"""Window plans and engines of whole-field prediction: accuracy, work and speed.

Two tables, both from one run so that they see the same machine load:

1. **Plans** on held-out synthetic volumes (the test split of the model's own manifest) with a
   *trained* model: overlap 0 / 0.25 / 0.5 x the training window and y/x windows 2x and 4x as
   large (shrunk to the field): mean R2 and the network work relative to covering the field once
   (windows x window voxels / field voxels: the FLOPs of a fixed-depth network scale with it).
   Below it, every exact engine's largest deviation from eager, and bfloat16's error on the
   trained model (RMS difference over the prediction's standard deviation, and its R2).
2. **Speed** per topology (the trained spec, the other topologies at the same width, untrained:
   speed does not depend on the weights) on one field: whole-field seconds of today's default
   (eager, training window, overlap 0.5, batch 4) and of every engine with the new default plan;
   achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode for the window shape, times
   windows, over seconds); % of a convolution ceiling measured in the same run (the best of a
   large channels-last conv2d, oneDNN's fastest case); speed-up over today's default.

Run: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_predict_plans.py [CKPT]
     [--shape 64x232x344] [--topologies 3to2d,3d,2d,2to3d] [--engines eager,torchscript,onnx]
CKPT defaults to the newest demo run (`sparsessp-bmz demo` or `train training/demo.yaml`).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sparsessp_bmz.cli.parsing import parse_shape
from sparsessp_bmz.data.sparse import subsample
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.data.volumes import load_pair
from sparsessp_bmz.metrics import image_metrics
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.predict import (
    ENGINES,
    plan_windows,
    predict_array,
    predict_volume,
    resolve_window,
    runner_for,
)
from sparsessp_bmz.predict.defaults import DEFAULT_ENGINE, DEFAULT_OVERLAP, default_window
from sparsessp_bmz.predict.windows import fitted_window
from sparsessp_bmz.spec import TOPOLOGIES, ModelSpec
from sparsessp_bmz.trained import TrainedModel
from sparsessp_bmz.training.checkpoint import load_trained

#: Today's default before this benchmark chose a new one (for the speed-up column).
TODAY = {"overlap": 0.5, "batch_size": 4, "engine": "eager"}


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def conv_ceiling_gflops(repeats: int = 5) -> float:
    """Best-of-`repeats` throughput of a large 3x3 conv2d (64 -> 64 channels, 256 x 256,
    channels-last): the practical convolution peak of this machine at these threads."""
    x = torch.randn(4, 64, 256, 256).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last).eval()
    flops = 2 * 4 * 64 * 64 * 9 * 256 * 256
    with torch.no_grad():
        conv(x)
        best = min(_timed(lambda: conv(x)) for _ in range(repeats))
    return flops / best / 1e9


def window_flops(net: torch.nn.Module, input_window: tuple[int, int, int]) -> float:
    """FLOPs of one forward pass over one window (counted on the meta device: no compute)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.to("meta")(torch.empty(1, 1, *input_window, device="meta"))
    return float(counter.get_total_flops())


def newest_demo_checkpoint() -> Path:
    found = sorted(
        Path("demo_output/runs").glob("sparsessp-*-3to2d-*/checkpoints/best.ckpt"),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise SystemExit("no trained demo model: run `sparsessp-bmz demo` first or give a CKPT")
    return found[-1]


def _r2(prediction: np.ndarray, target: np.ndarray) -> float:
    return image_metrics(prediction[: target.shape[0]], target).r2


def plan_table(trained: TrainedModel, console, engine: str) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    spec = trained.spec
    settings = trained.data_for()
    volumes = []
    for row in rows_for(settings, "test", save=False):
        pair = load_pair(row, settings)
        volumes.append((np.ascontiguousarray(subsample(pair.signal, spec.ratio, 0)), pair.target))
    shape = volumes[0][0].shape
    table = Table(
        title=f"Window plans, {spec.model_id} (trained), {len(volumes)} held-out volumes "
        f"{'x'.join(map(str, volumes[0][1].shape))}, engine {engine}"
    )
    headers = ("window (target)", "overlap z", "overlap y/x", "windows/volume",
               "work / cover once", "R2", "ΔR2 vs today")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="right")
    today = None
    windows = dict.fromkeys(fitted_window(spec, shape, scale) for scale in (1, 2, 4))
    for window in windows:
        input_window = resolve_window(spec, window)
        with runner_for(trained.net, input_window, engine=engine) as run:  # type: ignore[arg-type]
            for z_overlap, yx_overlap in itertools.product((0.5, 0.25, 0.0), repeat=2):
                overlap = (z_overlap, yx_overlap, yx_overlap)
                plan = plan_windows(shape, input_window, overlap)
                r2 = float(
                    np.mean([_r2(predict_array(run, s, plan, spec.ratio), t) for s, t in volumes])
                )
                today = r2 if today is None else today  # the first row is today's default
                work = plan.count * np.prod(plan.input_window) / np.prod(shape)
                table.add_row(
                    "x".join(map(str, window)), f"{z_overlap:g}", f"{yx_overlap:g}",
                    str(plan.count), f"{work:.2f}", f"{r2:.4f}", f"{r2 - today:+.4f}",
                )  # fmt: skip
    console.print(table)

    sparse, target = volumes[0]
    window = default_window(spec, sparse.shape)
    eager = predict_volume(trained.net, spec, sparse, window=window, overlap=DEFAULT_OVERLAP)
    for other in ENGINES[1:]:
        out = predict_volume(
            trained.net, spec, sparse, window=window, overlap=DEFAULT_OVERLAP, engine=other
        )
        rms = float(np.sqrt(np.mean((out - eager) ** 2)) / eager.std())
        console.print(
            f"{other:>11} vs eager on the default plan, volume 1: max |d| / std "
            f"{np.abs(out - eager).max() / eager.std():.2e}, RMS d / std {rms:.2e}, "
            f"R2 {_r2(out, target):.4f} (eager {_r2(eager, target):.4f})"
        )


def speed_table(base: ModelSpec, trained: TrainedModel, args, console) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    ceiling = conv_ceiling_gflops()
    depth, height, width = parse_shape(args.shape, "--shape")
    sparse_shape = (depth // base.ratio, height, width)
    sparse = np.random.default_rng(0).normal(size=sparse_shape).astype(np.float32)
    table = Table(
        title=f"Whole field {args.shape} (r={base.ratio}), width {base.width}, U={base.units}, "
        f"{torch.get_num_threads()} threads; conv ceiling {ceiling:.1f} GFLOP/s"
    )
    headers = ("topology", "run", "window", "overlap", "windows", "seconds", "GFLOP/s",
               "% of conv ceiling", "speed-up")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header in ("topology", "run") else "right")
    engines = [e for e in args.engines.split(",") if e]
    for topology in args.topologies.split(","):
        spec = base.model_copy(update={"topology": topology})
        if spec == trained.spec:
            net = trained.net
        else:
            torch.manual_seed(0)
            net = build_net(spec).eval()
        try:
            with torch.no_grad():
                net(torch.zeros(1, 1, *spec.input_patch))
        except RuntimeError as err:  # e.g. 2to3d at a width with fewer channels than slices
            console.print(f"{topology}: not run at this width: {str(err).splitlines()[0]}")
            continue
        runs = [("today: eager", spec.patch, TODAY["overlap"], TODAY["batch_size"], "eager")]
        window = default_window(spec, sparse_shape)
        runs += [(f"new: {e}", window, DEFAULT_OVERLAP, 1, e) for e in engines]
        today_s = None
        for label, win, overlap, batch, engine in runs:
            input_window = resolve_window(spec, win)
            plan = plan_windows(sparse_shape, input_window, overlap)
            start = time.perf_counter()
            predict_volume(
                net, spec, sparse, window=win, overlap=overlap, batch_size=batch,
                engine=engine,  # type: ignore[arg-type]
            )  # fmt: skip
            seconds = time.perf_counter() - start
            # tracing/exporting is part of the work a user waits for: counted
            today_s = today_s or seconds
            flops = window_flops(build_net(spec), input_window) * plan.count
            gflops = flops / seconds / 1e9
            table.add_row(
                topology, label, "x".join(map(str, win)), f"{overlap:g}", str(plan.count),
                f"{seconds:.1f}", f"{gflops:.1f}", f"{100 * gflops / ceiling:.0f}",
                f"{today_s / seconds:.2f}x",
            )  # fmt: skip
        console.print(table)  # after each topology: partial results survive an interruption


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path)
    parser.add_argument("--shape", default="64x232x344", help="timed field, target D x H x W")
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--engines", default="eager,torchscript,onnx")
    parser.add_argument("--skip-plans", action="store_true")
    parser.add_argument(
        "--paper",
        action="store_true",
        help="time the paper-width networks (width 1, U=256, r=2, patch 32x128x128, untrained) "
        "instead of the checkpoint's; implies --skip-plans",
    )
    args = parser.parse_args()
    from rich.console import Console

    console = Console(width=200)
    trained = load_trained(args.checkpoint or newest_demo_checkpoint())
    base = trained.spec
    if args.paper:
        base = ModelSpec(organelle="dna", ratio=2, topology="3to2d", patch=(32, 128, 128))
    elif not args.skip_plans:
        plan_table(trained, console, DEFAULT_ENGINE)
    speed_table(base, trained, args, console)


if __name__ == "__main__":
    main()

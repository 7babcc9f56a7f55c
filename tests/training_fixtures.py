"""The tiny training configuration the training, export and hostile-input tests share."""

from __future__ import annotations

from pathlib import Path


def tiny_raw(manifest: Path, run_dir: Path, max_steps: int = 3) -> dict:
    """Two steps per epoch on 8x32x32 patches of a very narrow 3to2d net, as a plain mapping."""
    return {
        "model": {
            "organelle": "dna",
            "ratio": 2,
            "topology": "3to2d",
            "width": 0.125,
            "units": 16,
            "patch": [8, 32, 32],
        },
        "data": {"manifest": str(manifest), "samples_per_epoch": 4, "patches_per_volume": 2},
        "optim": {"batch_size": 2, "max_steps": max_steps, "val_samples": 2, "lr": 1e-3},
        "trainer": {"run_dir": str(run_dir), "progress_bar": False, "accelerator": "cpu"},
    }

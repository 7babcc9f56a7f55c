"""The three weight formats of a package, written so that deepImageJ can run each one and so that
exporting the same network twice gives the same bytes.

* `pytorch_state_dict`: `torch.save` of plain contiguous tensors. The archive's inner folder is
  named after the file, so the file name is fixed; the rest of the archive is content-derived.
* TorchScript by `torch.jit.trace` (a scripted `F.interpolate` does not load in deepImageJ's
  torch 2.0). TorchScript names module types with a process-wide counter, so a second trace in the
  same process gets different type names; tracing therefore runs in a fresh interpreter, which
  rebuilds the network from the state dict file (proving that file is complete on the way).
* ONNX by the legacy exporter (`dynamo=False`), opset 17, IR version forced down to 8 (what
  deepImageJ's onnxruntime 1.13 reads) and all weights embedded in the one file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

STATE_DICT_FILE = "weights.pt"
TORCHSCRIPT_FILE = "weights_torchscript.pt"
ONNX_FILE = "weights.onnx"
ONNX_OPSET = 17
ONNX_MAX_IR_VERSION = 8


class WeightExportError(RuntimeError):
    """A weight format could not be written; the message names the format and the cause."""


def write_state_dict(net: nn.Module, folder: Path) -> Path:
    """Plain tensors only: no parameters sharing storage, no module objects to pickle."""
    state = {
        name: tensor.detach().cpu().contiguous().clone()
        for name, tensor in net.state_dict().items()
    }
    path = folder / STATE_DICT_FILE
    torch.save(state, path)
    return path


def write_torchscript(
    state_dict: Path, spec_fields: dict[str, Any], example: np.ndarray, folder: Path
) -> Path:
    """Trace in a fresh interpreter (see the module docstring for why)."""
    path = folder / TORCHSCRIPT_FILE
    example_path = folder / ".trace_example.npy"
    np.save(example_path, np.ascontiguousarray(example, dtype=np.float32))
    command = [
        sys.executable,
        "-m",
        "sparsessp_bmz.bmz.weights",
        str(state_dict),
        json.dumps(spec_fields),
        str(example_path),
        str(path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    finally:
        example_path.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise WeightExportError(f"TorchScript tracing failed:\n{tail}")
    return path


def _trace_main(state_dict: str, spec_json: str, example: str, out: str) -> None:
    from sparsessp_bmz.nets import build_net_from_fields

    torch.set_num_threads(1)
    net = build_net_from_fields(**json.loads(spec_json))
    net.load_state_dict(torch.load(state_dict, map_location="cpu", weights_only=True))
    net.eval()
    x = torch.from_numpy(np.load(example))
    with torch.no_grad():
        traced = torch.jit.trace(net, x, _store_inputs=False)
    traced.save(out)


def write_onnx(net: nn.Module, example: np.ndarray, folder: Path, *, dynamic_z: bool) -> Path:
    """Legacy export with dynamic batch/y/x (and z when the network accepts several depths)."""
    import onnx

    path = folder / ONNX_FILE
    spatial = {0: "batch", 3: "y", 4: "x"}
    if dynamic_z:
        spatial[2] = "z"
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    try:
        with torch.no_grad():
            torch.onnx.export(
                net,
                (x,),
                str(path),
                dynamo=False,
                opset_version=ONNX_OPSET,
                external_data=False,
                input_names=["raw"],
                output_names=["prediction"],
                dynamic_axes={"raw": spatial, "prediction": dict(spatial)},
                do_constant_folding=True,
            )
    except Exception as err:  # the exporter raises many unrelated types
        raise WeightExportError(f"ONNX export failed: {err}") from err
    model = onnx.load(str(path), load_external_data=False)
    model.ir_version = min(model.ir_version, ONNX_MAX_IR_VERSION)
    onnx.checker.check_model(model)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise WeightExportError("ONNX export wrote external data; deepImageJ needs one file")
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


if __name__ == "__main__":
    _trace_main(*sys.argv[1:5])

"""The three weight formats of a package, written so that deepImageJ can run each one and so that
exporting the same network twice gives the same bytes.

* `pytorch_state_dict`: `torch.save` of plain contiguous tensors. The archive's inner folder is
  named after the file, so the file name is fixed; the rest of the archive is content-derived.
* TorchScript by `torch.jit.trace` (a scripted `F.interpolate` does not load in deepImageJ's
  torch 2.0). TorchScript names module types with a process-wide counter, so a second trace in the
  same process gets different type names; tracing therefore runs in a fresh interpreter, which
  builds the network from the package's own network source file and loads the state dict into it
  strictly (proving on the way that both files are complete without this project).
* ONNX by the legacy exporter (`dynamo=False`), opset 17, IR version forced down to 8 (what
  deepImageJ's onnxruntime 1.13 reads) and all weights embedded in the one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsessp_bmz.bmz.deepimagej import MAX_ONNX_IR_VERSION, MAX_ONNX_OPSET
from sparsessp_bmz.errors import UserInputError

STATE_DICT_FILE = "weights.pt"
TORCHSCRIPT_FILE = "weights_torchscript.pt"
ONNX_FILE = "weights.onnx"
#: The newest ONNX deepImageJ's onnxruntime 1.13 reads; the limits are deepImageJ's rules.
ONNX_OPSET = MAX_ONNX_OPSET
#: Entry time of every zip this project writes (packages, TorchScript archives): zips record
#: times, and a fixed one keeps re-exports byte-identical.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


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
    source: Path, kwargs: dict[str, Any], state_dict: Path, example: np.ndarray, folder: Path
) -> Path:
    """Trace in a fresh interpreter (see the module docstring for why).

    `source` is the package's network file, `kwargs` the arguments of its architecture callable.
    """
    path = folder / TORCHSCRIPT_FILE
    example_path = folder / ".trace_example.npy"
    np.save(example_path, np.ascontiguousarray(example, dtype=np.float32))
    command = [
        sys.executable,
        "-m",
        "sparsessp_bmz.bmz.weights",
        str(source),
        json.dumps(kwargs),
        str(state_dict),
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


def load_architecture(source: Path, kwargs: dict[str, Any]) -> nn.Module:
    """The network a package's `pytorch_state_dict` describes, built from its source file alone
    (as bioimageio.core builds it), in eval mode with fresh weights.

    The code is compiled under the bare file name: a trace records the file of every Python
    frame in its debug information, and the package's temporary folder must not end up there
    (re-exports would then differ).
    """
    import types

    from sparsessp_bmz.bmz.netsource import ARCHITECTURE_CALLABLE

    module = types.ModuleType(f"_package_net_{source.stem}")
    module.__file__ = source.name
    sys.modules[module.__name__] = module  # dataclasses look their module up while building
    try:
        exec(compile(source.read_text(encoding="utf-8"), source.name, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return getattr(module, ARCHITECTURE_CALLABLE)(**kwargs).eval()


def _trace_main(source: str, kwargs_json: str, state_dict: str, example: str, out: str) -> None:
    torch.set_num_threads(1)
    net = load_architecture(Path(source), json.loads(kwargs_json))
    net.load_state_dict(torch.load(state_dict, map_location="cpu", weights_only=True))
    x = torch.from_numpy(np.load(example))
    with torch.no_grad():
        traced = torch.jit.trace(net, x, _store_inputs=False)
    traced.save(out)
    strip_debug_records(Path(out))


def strip_debug_records(path: Path) -> None:
    """Drop the `*.debug_pkl` records of a TorchScript archive, in place.

    They map graph nodes to Python source lines, with the absolute paths of this checkout and
    of the installed torch: packages would leak local paths, and re-exports from another folder
    or machine would differ. torch.jit.load does not need them.
    """
    import zipfile

    with zipfile.ZipFile(path) as archive:
        records = [
            (info, archive.read(info))
            for info in archive.infolist()
            if not info.filename.endswith(".debug_pkl")
        ]
    temporary = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
        for info, data in records:
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            archive.writestr(entry, data)
    temporary.replace(path)


def write_onnx(
    net: nn.Module, example: np.ndarray, folder: Path, *, dynamic_axes: dict[int, str]
) -> Path:
    """Legacy export; `dynamic_axes` names the axes (batch, y, x, ...) that vary in size."""
    import onnx

    path = folder / ONNX_FILE
    spatial = dict(dynamic_axes)
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
    model.ir_version = min(model.ir_version, MAX_ONNX_IR_VERSION)
    onnx.checker.check_model(model)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise WeightExportError("ONNX export wrote external data; deepImageJ needs one file")
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


if __name__ == "__main__":
    _trace_main(*sys.argv[1:6])


@dataclass(frozen=True)
class WeightsFile:
    """One weight file of a package and the sha256 its rdf.yaml records for it."""

    source: str
    sha256: str | None


def verified_weights(package: Path, read: Callable[[str], bytes], weights: WeightsFile) -> bytes:
    """The bytes of one weight file of `package`, or one clear error when it is missing,
    unreadable or differs from the sha256 its rdf.yaml records (truncated or tampered)."""
    try:
        data = read(weights.source)
    except (OSError, KeyError, zipfile.BadZipFile, UserInputError) as err:
        raise UserInputError(
            f"package {package}: its weights {weights.source} cannot be read ({err}); download "
            "or export the package again"
        ) from err
    if weights.sha256 and hashlib.sha256(data).hexdigest() != weights.sha256.lower():
        raise UserInputError(
            f"package {package}: its weights {weights.source} do not match the sha256 in its "
            "rdf.yaml (truncated, corrupted or modified); download or export the package again"
        )
    return data

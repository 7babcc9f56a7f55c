"""How a batch of windows goes through the network: eager PyTorch, a frozen TorchScript graph,
ONNX Runtime, or eager under bfloat16 autocast.

Measured on 2 CPU cores (`benchmarks/bench_predict_plans.py`): a traced, frozen and
inference-optimised TorchScript graph (`torch.jit.trace` + `torch.jit.freeze` +
`torch.jit.optimize_for_inference`: conv-bn folding, oneDNN layouts) gives the same outputs as
eager within float tolerance; ONNX Runtime is faster still on whole-plane windows and is the
default (`predict.defaults`); bfloat16 is an option only, as it changes the output by a few
percent of its spread.

Every runner takes a float32 numpy batch (n, 1, d, h, w) and returns float32 numpy
(n, 1, r*d, h, w). Traced graphs are specialised to one input shape, so a partial last batch is
padded to the traced batch size and cut after the forward pass.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from sparsessp_bmz.errors import UserInputError

#: What runs the network: see the module docstring.
Engine = Literal["eager", "torchscript", "onnx", "bf16"]
ENGINES: tuple[Engine, ...] = get_args(Engine)

#: A batch of sparse windows in, the dense prediction of each out (numpy float32, 5D).
WindowFn = Callable[[np.ndarray], np.ndarray]

#: ONNX opset of the in-memory export (the packages ship the same, see bmz/weights.py).
ONNX_OPSET = 17


def _padded_to(batch: np.ndarray, size: int) -> np.ndarray:
    if len(batch) == size:
        return batch
    pad = np.zeros((size - len(batch), *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, pad])


def eager_runner(net: nn.Module, device: torch.device, *, bf16: bool = False) -> WindowFn:
    """The network as it is (in eval mode; the caller restores its mode), optionally under
    bfloat16 autocast."""

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device)
            if bf16:
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    return net(x).float().cpu().numpy()
            return net(x).float().cpu().numpy()

    return run


def freeze_script(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Freeze a TorchScript module (parameters become constants) and let torch fold and fuse it
    for inference (conv + batch norm, oneDNN layouts on CPU)."""
    frozen = torch.jit.freeze(module.eval())
    return torch.jit.optimize_for_inference(frozen)


def traced_runner(
    net: nn.Module | torch.jit.ScriptModule, device: torch.device, batch_shape: tuple[int, ...]
) -> WindowFn:
    """A frozen TorchScript graph of `net` for batches of `batch_shape` (traced here unless
    `net` is TorchScript already, as a package's weights are)."""
    example = torch.zeros(batch_shape, device=device)
    with torch.inference_mode(False), torch.no_grad():
        script = (
            net
            if isinstance(net, torch.jit.ScriptModule)
            else torch.jit.trace(net, example, check_trace=False)
        )
        graph = freeze_script(script)
        graph(example)  # the first call specialises the graph: keep it out of the timed work

    def run(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        with torch.no_grad():
            x = torch.from_numpy(_padded_to(batch, batch_shape[0])).to(device)
            return graph(x)[:n].float().cpu().numpy()

    return run


def onnx_bytes(net: nn.Module, batch_shape: tuple[int, ...]) -> bytes:
    """`net` exported to ONNX in memory for one input shape (the legacy exporter, as the packages
    use: bmz/weights.py)."""
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            net,
            (torch.zeros(batch_shape),),
            buffer,
            input_names=["input"],
            output_names=["output"],
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def onnx_runner(model: bytes, batch_shape: tuple[int, ...], device: torch.device) -> WindowFn:
    """An ONNX Runtime session over `model` (CPU; CUDA when the device is CUDA and the build has
    it), with as many threads as torch uses."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise UserInputError(
            "ONNX Runtime is not installed; `pip install onnxruntime` or use --engine torchscript"
        ) from err
    check_engine_device("onnx", device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # idle threads sleep instead of spinning, as CPU cores are often shared (the key is
    # onnxruntime's, include/onnxruntime/core/session/onnxruntime_session_options_config_keys.h)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(model, options, providers=providers)
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        (out,) = session.run(None, {name: _padded_to(batch, batch_shape[0])})
        return np.asarray(out[:n], dtype=np.float32)

    return run


def check_engine_device(engine: Engine, device: torch.device) -> None:
    """Refuse ONNX on a CUDA device when the installed ONNX Runtime has no CUDA provider (it
    would run on the CPU without a word)."""
    if engine != "onnx" or device.type != "cuda":
        return
    try:
        import onnxruntime as ort
    except ImportError:
        return  # onnx_runner says how to install it
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UserInputError(
            f"--device {device} asks for CUDA, but the installed ONNX Runtime runs on the CPU "
            "only; use --engine torchscript (runs on CUDA) or install onnxruntime-gpu"
        )


def compile_runner(
    net: nn.Module, engine: Engine, device: torch.device, batch_shape: tuple[int, ...]
) -> WindowFn:
    """The runner of `engine` for a network in eval mode on `device`."""
    if engine == "eager":
        return eager_runner(net, device)
    if engine == "bf16":
        return eager_runner(net, device, bf16=True)
    if engine == "torchscript":
        return traced_runner(net, device, batch_shape)
    if engine == "onnx":
        # export a CPU copy: the caller's network stays on its device
        exported = onnx_bytes(copy.deepcopy(net).cpu(), batch_shape)
        return onnx_runner(exported, batch_shape, device)
    raise UserInputError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")

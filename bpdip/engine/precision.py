"""Numeric precision of a run: backend flags (TF32, cuDNN autotuning) and bf16 autocast.

PyTorch's defaults are neither of our modes: cuDNN convolutions use TF32 by default on
Ampere and later GPUs while matmuls do not. So ``fp32`` must switch TF32 off explicitly
(the strict float32 of the original code), and ``tf32`` switches it on for both.

We set the flags through the ``allow_tf32`` attributes: they exist in every torch since
1.7, they set the newer ``fp32_precision`` values consistently (conv and rnn together),
and reading them back never hits torch's "mix of legacy and new APIs" error, which
setting only ``cudnn.conv.fp32_precision`` can provoke.
"""

from __future__ import annotations

import contextlib

import torch

from bpdip.engine.settings import EngineSettings


def _read_flags() -> tuple:
    b = torch.backends
    return b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.benchmark


def _write_flags(cudnn_tf32: bool, matmul_tf32: bool, benchmark: bool) -> None:
    b = torch.backends
    b.cudnn.allow_tf32 = cudnn_tf32
    b.cuda.matmul.allow_tf32 = matmul_tf32
    b.cudnn.benchmark = benchmark


@contextlib.contextmanager
def backend_flags(engine: EngineSettings):
    """Set TF32 and cudnn.benchmark for a resolved ``engine``; restore the old flags on exit.

    bf16 keeps TF32 on for what autocast leaves in float32 (the output head): that mode
    trades precision for speed anyway, and the quality check compares it with tf32.
    """
    if engine.precision == "auto":
        raise ValueError("resolve the engine settings for a device first (EngineSettings.resolve)")
    saved = _read_flags()
    tf32 = engine.precision in ("tf32", "bf16")
    _write_flags(tf32, tf32, bool(engine.cudnn_benchmark))
    try:
        yield
    finally:
        _write_flags(*saved)


def autocast(engine: EngineSettings, device: torch.device):
    """The autocast context of the network's forward: bf16 or nothing.

    ``cache_enabled=False``: autocast's weight-cast cache must not outlive a CUDA graph
    capture (PyTorch CUDA-graphs notes), and each weight is cast once per step anyway.
    """
    if engine.precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)

"""Engine options: how a run is executed, never what it computes.

Every option here changes speed, memory or floating-point rounding only; the loss, the
network, the optimiser and the measurements are the protocol's whatever is chosen.
``conf/engine/*.yaml`` holds the same keys; :func:`EngineSettings.from_config` reads them.

Defaults ("auto") resolve per device:
    cuda: precision tf32, cuda_graphs on, cudnn.benchmark on, fused Adam, NCHW
    cpu:  precision bf16 with channels_last on a CPU with bf16 in hardware (AVX512-BF16 or
          AMX) for a network of at least CPU_BF16_MIN_PARAMETERS parameters, else fp32 (NCHW);
          channels_last also follows an explicit bf16 on the CPU; no graphs, no compile
bf16 becomes the GPU default only once ``scripts/bench.py --quality`` shows its peak PSNR
within 0.1 dB of TF32 averaged over >= 3 Set14 images (issue 6); until then it is opt-in.
The CPU rule is issue 21's measurement (``scripts/bench.py --cpu-matrix`` and the CPU-scale
quality check, ``results/bench/README.md``, 1 thread): a step of the paper's net (2.2M
parameters) is 1.9x (128 px) and 2.2x (256 px) faster in bf16 with channels_last than in
fp32 (bf16 in NCHW: 1.5x, a third of its time converting layouts for oneDNN), and bf16
passes the quality check; the small CPU-scale net (35k parameters) gains nothing (its step
is bound by per-operator overhead, not by convolution arithmetic). torch.compile (inductor's
C++ backend) stays opt-in: it was no faster than bf16 + channels_last at 128 px, 10 % faster
at 256 px, and costs 30-45 s of build per image size and run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
# issue 21's CPU rule (module docstring): the measured crossover lies between the small net
# (34,627 parameters: bf16 = fp32 speed) and the paper's (2,217,831: bf16 1.4-1.7x faster)
CPU_BF16_MIN_PARAMETERS = 500_000


def cpu_has_bf16() -> bool:
    """bf16 arithmetic in hardware (AVX512-BF16 or AMX tiles), as torch reports it; False
    where this torch cannot tell (then autocast would emulate bf16, which is slower)."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails means "unknown", i.e. no
            pass
    return False


def network_parameters(model) -> int:
    """Trainable parameters of ONE network of ``model`` (a stacked model holds ``stack``)."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total // max(1, int(getattr(model, "stack", 1) or 1))


@dataclass(frozen=True)
class EngineSettings:
    """How to run the optimisation; see the module docstring for the "auto" rules.

    precision     fp32 (strict IEEE float32 everywhere, no TF32), tf32 (float32 storage,
                  TF32 tensor-core convolutions and matmuls), bf16 (autocast of the network
                  to bfloat16; the loss, FFTs, metrics and Adam stay float32/float64)
    compile       torch.compile the network (forward and backward)
    compile_mode  torch.compile mode; its own CUDA graphs are off, ours capture the whole step
    cuda_graphs   capture forward + loss + backward + Adam of one step in one CUDA graph
                  (auto: a failed capture warns and the run continues eagerly; true: it fails)
    stack         K runs of one image size trained together as one grouped network
    channels_last NHWC memory layout for the network (auto: with bf16 on a CPU, where oneDNN's
                  bf16 kernels want it; NCHW elsewhere)
    cudnn_benchmark  let cuDNN time its algorithms once per shape
    fused_adam    the single-kernel Adam (same update rule; CUDA only)
    warmup        eager steps run before a graph capture (they are rewound, see step.py)
    """

    precision: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    cuda_graphs: bool | str = "auto"
    stack: int = 1
    channels_last: bool | str = "auto"
    cudnn_benchmark: bool | str = "auto"
    fused_adam: bool | str = "auto"
    warmup: int = 3

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"engine.precision must be one of {PRECISIONS[1:]} or auto, got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"engine.compile must be true or false, got {self.compile!r}")
        for key in ("channels_last", "cuda_graphs", "cudnn_benchmark", "fused_adam"):
            value = getattr(self, key)
            if value != "auto" and not isinstance(value, bool):
                raise ValueError(f"engine.{key} must be true, false or auto, got {value!r}")
        if not isinstance(self.stack, int) or self.stack < 1:
            raise ValueError(f"engine.stack must be an integer >= 1 (runs trained together), got {self.stack!r}")
        if not isinstance(self.warmup, int) or self.warmup < 1:
            raise ValueError(f"engine.warmup must be an integer >= 1, got {self.warmup!r}")
        if self.compile and self.cuda_graphs is not False and self.compile_mode in ("reduce-overhead", "max-autotune"):
            # those modes capture CUDA graphs of their own, which cannot nest in ours
            raise ValueError(f"engine.compile_mode={self.compile_mode} makes CUDA graphs itself; use "
                             "compile_mode=default or max-autotune-no-cudagraphs (engine.cuda_graphs captures "
                             "the whole step), or set engine.cuda_graphs=false")

    @classmethod
    def from_config(cls, cfg: Mapping | "EngineSettings" | None) -> "EngineSettings":
        """From a Hydra/OmegaConf node or a plain dict (``cfg.engine``); None gives defaults."""
        if cfg is None:
            return cls()
        if isinstance(cfg, EngineSettings):
            return cfg
        names = {f.name for f in dataclasses.fields(cls)}
        items = dict(cfg.items())
        unknown = sorted(set(items) - names)
        if unknown:
            raise ValueError(f"unknown engine option(s) {unknown}; valid keys are {sorted(names)}")
        return cls(**items)

    def resolve(self, device: torch.device | str, parameters: int | None = None) -> "EngineSettings":
        """Concrete settings for ``device``: every "auto" replaced, impossible choices refused.

        ``parameters`` (of one network, :func:`network_parameters`) feeds the CPU rule of the
        module docstring; without it a CPU resolves to fp32."""
        device = torch.device(device)
        cuda = device.type == "cuda"
        wide = parameters is not None and parameters >= CPU_BF16_MIN_PARAMETERS
        precision = self.precision
        if precision == "auto":
            precision = "tf32" if cuda else ("bf16" if wide and cpu_has_bf16() else "fp32")
        elif precision == "tf32" and not cuda:
            precision = "fp32"  # TF32 is a CUDA tensor-core mode; on the CPU float32 is float32
        layout = self.channels_last
        if layout == "auto":
            layout = not cuda and precision == "bf16"
        if self.cuda_graphs is True and not cuda:
            raise ValueError("engine.cuda_graphs=true needs a CUDA device; use engine.cuda_graphs=auto or false")
        graphs = cuda if self.cuda_graphs == "auto" else self.cuda_graphs
        bench = cuda if self.cudnn_benchmark == "auto" else self.cudnn_benchmark
        fused = cuda if self.fused_adam == "auto" else self.fused_adam
        return dataclasses.replace(self, precision=precision, channels_last=layout, cuda_graphs=graphs,
                                   cudnn_benchmark=bench, fused_adam=fused)

    def label(self) -> str:
        """Short name for tables, e.g. ``tf32+graphs``."""
        parts = [self.precision]
        if self.compile:
            parts.append("compile")
        if self.cuda_graphs is True:
            parts.append("graphs")
        if self.channels_last is True:
            parts.append("cl")
        if self.stack > 1:
            parts.append(f"k{self.stack}")
        return "+".join(parts)

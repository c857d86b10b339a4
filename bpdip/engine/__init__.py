"""Fast execution of the DIP loop without changing what it computes.

- ``EngineSettings`` (``settings.py``): precision fp32 | tf32 | bf16, torch.compile, CUDA
  graphs, K-run stacking, channels_last, cudnn.benchmark, fused Adam; ``cfg.engine``
  maps onto it (``EngineSettings.from_config``), "auto" values resolve per device.
- ``backend_flags`` / ``autocast`` (``precision.py``): apply a precision.
- ``TrainStep`` (``step.py``): one step, eager or captured whole in a CUDA graph.
- ``StackedSkipNet``, ``stack_models``, ``StackedLoss``, ``group_by_size``
  (``stacked.py``): K runs of one image size trained together as one grouped network.
- ``count_flops`` (``flops.py``): analytic convolution FLOPs of the skip net.

``bpdip.loop.restore`` uses all of it (``RunSpec.engine``); ``scripts/bench.py`` measures it.
"""

from bpdip.engine.flops import count_flops
from bpdip.engine.precision import autocast, backend_flags
from bpdip.engine.settings import PRECISIONS, EngineSettings
from bpdip.engine.stacked import StackedLoss, StackedSkipNet, group_by_size, stack_models, unstack_state
from bpdip.engine.step import TrainStep, make_optimizer, rewind, snapshot
from bpdip.models import seeded_model


def build_stacked(factory, seeds) -> StackedSkipNet:
    """K = len(seeds) networks from ``factory`` (a SkipNet constructor), each initialised as
    ``bpdip.models.seeded_model(factory, seed)`` would alone, stacked into one model."""
    return stack_models([seeded_model(factory, int(s)) for s in seeds])


__all__ = [
    "PRECISIONS", "EngineSettings", "StackedLoss", "StackedSkipNet", "TrainStep", "autocast", "backend_flags",
    "build_stacked", "count_flops", "group_by_size", "make_optimizer", "rewind", "snapshot", "stack_models",
    "unstack_state",
]

"""K independent skip networks trained as one model (grouped convolutions, groups = K).

Run k's activations are channels [k*C, (k+1)*C) of one (1, K*C, H, W) tensor. Every layer
of ``bpdip.models.SkipNet`` has a per-network equivalent that never mixes runs:

- 3x3 / 1x1 convolutions: ``Conv2d(K*c_in, K*c_out, groups=K)``; group k's weight is
  run k's weight (the grouped weight is the K weights concatenated along dim 0);
- BatchNorm2d(K*C) on a batch of one: each channel's statistics are over H x W of that
  channel only, exactly run k's training-mode statistics on its own batch of one;
- reflection padding, bilinear upsampling, LeakyReLU, sigmoid, centre crops: per channel;
- the skip concat is interleaved per run ([skip_k, deep_k] for each k), so group k of
  the next layer sees exactly run k's concat.

The network is ``bpdip.models.SkipNet`` built with ``runs=K`` (one implementation for
both). The module tree and parameter names are SkipNet's, so ``stack_models`` builds the
stacked weights by concatenating K SkipNet state dicts key by key, and
``unstack_state`` splits them back. Adam is elementwise, so one Adam over the stacked
parameters is K Adams over the separate ones.

For the forward pass the runs are the batch dimension outside the model: input
(K, C_in, H, W) -> output (K, 3, H, W), one sample per run, as ``restore`` expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from bpdip.models.skip import SkipNet


class StackedSkipNet(SkipNet):
    """K SkipNets with SkipNet's arguments; ``stack`` = K. Input/output (K, C, H, W).

    The layers are SkipNet's with ``runs=K``; under bf16 autocast the head runs in float32
    as SkipNet's does, so stacking never changes what a run computes.
    """

    def __init__(
        self,
        stack: int = 1,
        in_channels: int = 32,
        out_channels: int = 3,
        channels_down: Sequence[int] = (128, 128, 128, 128, 128),
        channels_up: Sequence[int] = (128, 128, 128, 128, 128),
        channels_skip: Sequence[int] = (4, 4, 4, 4, 4),
    ):
        if not isinstance(stack, int) or stack < 1:
            raise ValueError(f"stack must be an integer >= 1, got {stack!r}")
        super().__init__(in_channels, out_channels, channels_down, channels_up, channels_skip, runs=stack)
        self.stack = stack
        self.out_channels = out_channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k, c, h, w = z.shape
        if k != self.stack or c != self.in_channels:
            raise ValueError(f"input {tuple(z.shape)} does not fit {self.stack} stacked runs of "
                             f"{self.in_channels} channels; pass (K, C, H, W) with K = stack")
        return super().forward(z.reshape(1, k * c, h, w)).view(k, self.out_channels, h, w)


def stack_models(models: Sequence[nn.Module]) -> StackedSkipNet:
    """One StackedSkipNet computing what ``models`` (SkipNets of one configuration) compute.

    Build the models with per-run seeds (``bpdip.loop.seeded_model``) so each run keeps the
    initialisation it would have alone.
    """
    if not models:
        raise ValueError("stack_models needs at least one model")
    first = models[0]
    config = _skip_config(first)
    for m in models[1:]:
        if _skip_config(m) != config:
            raise ValueError("all stacked models need the same configuration (channels, scales)")
    stacked = StackedSkipNet(len(models), **config)
    states = [m.state_dict() for m in models]
    merged = {}
    for key, ref in stacked.state_dict().items():
        parts = [s[key] for s in states]
        # num_batches_tracked is a per-layer counter, equal across runs
        merged[key] = parts[0].clone() if ref.ndim == 0 else torch.cat(parts, dim=0)
    stacked.load_state_dict(merged)
    return stacked.to(next(first.parameters()).device)


def unstack_state(stacked: StackedSkipNet, index: int) -> dict[str, torch.Tensor]:
    """Run ``index``'s weights as a SkipNet state dict (e.g. to save one run's network)."""
    if not 0 <= index < stacked.stack:
        raise IndexError(f"run {index} not in a stack of {stacked.stack}")
    return {key: (value.clone() if value.ndim == 0 else value.chunk(stacked.stack, dim=0)[index].clone())
            for key, value in stacked.state_dict().items()}


def _skip_config(model: nn.Module) -> dict:
    if isinstance(model, StackedSkipNet):
        raise ValueError("stack_models takes plain SkipNets, not already stacked networks")
    scales, node = [], getattr(model, "body", None)
    while node is not None:
        scales.append(node)
        node = node.inner
    if not scales or not hasattr(model, "head"):
        raise ValueError(f"stack_models needs SkipNet models, got {type(model).__name__}")
    down = tuple(s.down[0][1].out_channels for s in scales)
    up = tuple(s.post[0][1].out_channels for s in scales)
    skip = tuple(s.skip[0].out_channels if s.skip is not None else 0 for s in scales)
    return dict(in_channels=scales[0].down[0][1].in_channels, out_channels=model.head[0].out_channels,
                channels_down=down, channels_up=up, channels_skip=skip)


class StackedLoss:
    """Sample k of a (K, 3, H, W) output goes to ``losses[k]``; returns (K,) values.

    Each loss keeps its own y, kernel and weights, so K runs may differ in loss, noise
    level, kernel or image (of one size).
    """

    def __init__(self, losses: Sequence[Callable[[torch.Tensor], torch.Tensor]]):
        if not losses:
            raise ValueError("StackedLoss needs at least one loss")
        self.losses = list(losses)

    def __len__(self) -> int:
        return len(self.losses)

    def at_iteration(self, it: int, iterations: int) -> None:
        for loss in self.losses:
            if hasattr(loss, "at_iteration"):
                loss.at_iteration(it, iterations)

    # checkpoints (bpdip.loop): one state per run, for losses that have one (BP's warm start)
    def state_dict(self) -> list:
        return [loss.state_dict() if hasattr(loss, "state_dict") else {} for loss in self.losses]

    def check_state(self, state) -> None:
        if not isinstance(state, list) or len(state) != len(self.losses):
            raise ValueError(f"the loss state is not for {len(self.losses)} stacked run(s)")
        for loss, s in zip(self.losses, state):
            if hasattr(loss, "check_state"):
                loss.check_state(s)
            elif s != {}:
                raise ValueError("the loss state does not fit this run")

    def load_state_dict(self, state: list) -> None:
        self.check_state(state)
        for loss, s in zip(self.losses, state):
            if hasattr(loss, "load_state_dict"):
                loss.load_state_dict(s)

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        if out.shape[0] != len(self.losses):
            raise ValueError(f"{out.shape[0]} outputs for {len(self.losses)} losses")
        return torch.cat([loss(out[k : k + 1]).reshape(1) for k, loss in enumerate(self.losses)])


def group_by_size(items: Sequence, size_of: Callable, stack: int) -> list[list]:
    """Split ``items`` into groups of at most ``stack`` with one image size each, in order.

    Stacking needs one size per group (the runs share one tensor); the first-seen order
    of sizes and of items within a size is kept, so results are deterministic.
    """
    if stack < 1:
        raise ValueError(f"stack must be >= 1, got {stack}")
    by_size: dict = {}
    for item in items:
        by_size.setdefault(tuple(size_of(item)), []).append(item)
    return [group[i : i + stack] for group in by_size.values() for i in range(0, len(group), stack)]

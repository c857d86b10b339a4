"""One training step of the DIP loop, eager or captured in a CUDA graph.

The step is PROTOCOL's: out = f(z + reg_noise_std * n) with n ~ N(0, 1) fresh each
iteration; per-sample losses; the sum of the finite ones back-propagated; one Adam step.
The caller writes n into ``TrainStep.noise`` (in place) before each call, from its own
generators, so the random stream is the same whichever way the step runs.

CUDA graphs (PROTOCOL "Cost, measured": ~8 ms of each eager step is launch overhead)
follow PyTorch's whole-network capture recipe: a few eager warm-up steps on a side
stream (cuDNN autotuning, lazy optimiser state, torch.compile), then forward, loss,
backward and ``Adam(capturable=True)`` captured once and replayed each iteration. The
warm-up steps would change the run, so the weights, buffers and optimiser state are
snapshot before and copied back (in place: the graph holds their addresses) after the
capture. A captured step replays the same kernels on the same buffers: losses must be
pure tensor functions of the output (no Python state that changes between calls).
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from bpdip.engine.precision import autocast
from bpdip.engine.settings import EngineSettings


def make_optimizer(params, lr: float, engine: EngineSettings | None, device: torch.device) -> torch.optim.Adam:
    """Adam (PROTOCOL: lr 0.01, default betas). Same update rule in every variant; a graph
    needs ``capturable`` (step counter on the device) and the fused kernel is one launch."""
    if engine is None or torch.device(device).type != "cuda":
        return torch.optim.Adam(params, lr=lr)
    kw = {"fused": True} if engine.fused_adam else {"foreach": True}
    return torch.optim.Adam(params, lr=lr, capturable=bool(engine.cuda_graphs), **kw)


def snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Copies of every parameter, buffer and optimiser-state tensor."""
    return {
        "tensors": [t.detach().clone() for t in (*model.parameters(), *model.buffers())],
        "state": {p: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for p, s in opt.state.items()},
    }


@torch.no_grad()
def rewind(model: torch.nn.Module, opt: torch.optim.Optimizer, snap: dict) -> None:
    """Copy a snapshot back in place. Optimiser state created after the snapshot is zeroed:
    Adam's lazily created state (step 0, both moments 0) is all zeros, so zeroing it is
    exactly the state of a parameter that has not been stepped yet."""
    for t, saved in zip((*model.parameters(), *model.buffers()), snap["tensors"], strict=True):
        t.copy_(saved)
    for p, state in opt.state.items():
        saved = snap["state"].get(p)
        for k, v in state.items():
            if torch.is_tensor(v):
                v.copy_(saved[k]) if saved is not None else v.zero_()


@torch.no_grad()
def _match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give optimiser state (e.g. moments loaded from a checkpoint of a run with another
    memory layout) its parameter's strides: the fused Adam kernel walks them together."""
    for p, state in opt.state.items():
        for k, v in state.items():
            if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


class TrainStep:
    """Callable running one step; returns (output, per-sample losses), both detached.

    With graphs the returned tensors are the graph's static outputs: read them before the
    next call. ``close()`` frees the graph and its memory pool.
    """

    def __init__(self, model, losses, z: torch.Tensor, reg_noise_std: float, opt: torch.optim.Optimizer,
                 engine: EngineSettings, device: torch.device, graph_fallback: bool = False, after=None):
        self.model, self.losses, self.z, self.opt = model, losses, z, opt
        # after(out): per-step work on the output (the stopping rules), pure tensor ops, part
        # of the step and of its CUDA graph; not run on the warm-up steps, which are undone
        self.after, self._warming = after, False
        # engine.cuda_graphs=auto: a capture that fails warns and runs eager (same results);
        # an explicit true lets the error through
        self.graph_fallback = graph_fallback
        self.std = reg_noise_std
        self.engine, self.device = engine, torch.device(device)
        self.noise = torch.zeros_like(z)
        self.graphed = bool(engine.cuda_graphs) and self.device.type == "cuda"
        if engine.cuda_graphs and not self.graphed:
            raise ValueError("engine.cuda_graphs needs a CUDA device; use engine.cuda_graphs=auto or false")
        if engine.channels_last is True:  # "auto" unresolved means no (EngineSettings.resolve decides)
            model.to(memory_format=torch.channels_last)  # same Parameter objects: opt still holds them
        _match_state_layout(opt)
        self.forward = model
        if engine.compile:
            # a fresh model per run: forget earlier runs' compiled graphs, else dynamo's
            # recompile limit silently falls back to eager after a few image sizes
            torch._dynamo.reset()
            self.forward = torch.compile(model, mode=None if engine.compile_mode == "default" else engine.compile_mode)
        self.graph = None
        self.static_out = self.static_loss = None

    def _body(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.z + self.noise * self.std
        if self.engine.channels_last is True:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.engine, self.device):
            out = self.forward(x)
        per_sample = self.losses(out)
        # a sample whose loss went non-finite adds no gradient (its Adam moments still move
        # it); the loop marks it failed and never uses its later numbers; the others go on
        ok = torch.isfinite(per_sample)
        torch.where(ok, per_sample, torch.zeros_like(per_sample)).sum().backward()
        self.opt.step()
        if self.after is not None and not self._warming:
            self.after(out.detach())
        return out.detach(), per_sample.detach()

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.graphed:
            self.opt.zero_grad(set_to_none=True)
            return self._body()
        if self.graph is None:
            try:
                self._capture()
            except Exception as exc:
                if not self.graph_fallback:
                    raise
                warnings.warn(f"CUDA-graph capture failed ({type(exc).__name__}: {exc}); running eager steps, "
                              "which compute the same; set engine.cuda_graphs=false to skip the attempt")
                self.close()
                self.graphed = False
                self.opt.zero_grad(set_to_none=True)
                return self._body()
        self.graph.replay()
        return self.static_out, self.static_loss

    def warm_up_and_rewind(self, capture=None) -> None:
        """Run ``engine.warmup`` steps on throw-away noise, optionally ``capture(stream)``,
        then put weights, buffers, optimiser state and the caller's noise back as they were.

        On a GPU the warm-up runs on a side stream and the capture on the same stream, so
        library handles and workspaces made lazily on first use exist before capturing."""
        snap = snapshot(self.model, self.opt)
        noise = self.noise.clone()
        gen = torch.Generator(device=self.device).manual_seed(0)
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        if cuda:
            stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
            self._warming = True
            try:
                for _ in range(self.engine.warmup):
                    self.noise.normal_(generator=gen)
                    self.opt.zero_grad(set_to_none=True)
                    self._body()
            finally:
                self._warming = False
        if cuda:
            torch.cuda.current_stream(self.device).wait_stream(stream)
        try:
            if capture is not None:
                capture(stream)
        finally:  # also after a failed capture: the run goes on from where it was
            rewind(self.model, self.opt, snap)
            self.noise.copy_(noise)

    def _capture(self) -> None:
        def capture(stream):
            # grads set to None: backward inside the capture allocates them from the graph's
            # pool, and each replay overwrites them (no accumulation across steps)
            self.opt.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            # thread_local: a logger's or progress bar's thread cannot break the capture
            with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                self.static_out, self.static_loss = self._body()
            self.graph = graph

        self.warm_up_and_rewind(capture)

    def close(self) -> None:
        self.graph = self.static_out = self.static_loss = None
        if self.graphed:
            self.opt.zero_grad(set_to_none=True)  # grads live in the graph's pool

"""The engine (bpdip/engine): stacked networks equal separate ones, settings, FLOP count,
warm-up rewinding, precision flags, and restore() with engines and per-sample seeds (CPU)."""

import numpy as np
import pytest
import torch
from conftest import SLIM
from torch.utils.flop_counter import FlopCounterMode

from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.engine import (
    EngineSettings, StackedLoss, StackedSkipNet, TrainStep, backend_flags, build_stacked, count_flops,
    group_by_size, stack_models, unstack_state,
)
from bpdip.losses import make_loss
from bpdip.loop import Callback, LoopSettings, restore, seeded_model
from bpdip.models import SkipNet
from bpdip.physics import Blur, degrade, make_kernel, noise_sigma

SIZE = (37, 45)  # odd, non-square: exercises the centre crops of the skip concat
SEEDS = [5, 8, 13]


def factory():
    return SkipNet(**SLIM)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: tiny convolutions gain nothing from two, and two OpenMP threads
    on two busy cores can stall a step for a second when another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problem():
    """Two different images and losses of one size (a stack may mix losses and images)."""
    k = make_kernel("gaussian")
    xs = [center_crop(load_image(SET14_DIR / f"{n}.png"), SIZE) for n in ("face", "zebra")]
    ys = [degrade(x, k, 2.0, seed=i) for i, x in enumerate(xs)]
    return k, xs, ys


def tensors(arrays, dtype=torch.float32):
    return torch.cat([torch.from_numpy(a).permute(2, 0, 1)[None] for a in arrays]).to(dtype)


def losses_for(problem, dtype):
    k, xs, ys = problem
    blur = Blur(k, SIZE)
    y = tensors(ys, dtype)
    return [make_loss("bp", blur, y[:1], noise_sigma(2.0), 1e-3), make_loss("ls", blur, y[1:], noise_sigma(2.0))]


# ---------------------------------------------------------------- stacked == separate


def test_stacked_forward_gradients_and_adam_step_equal_separate_networks():
    """float64, so the comparison is not blurred by float32 rounding: after one Adam step
    from identical seeds, every weight, gradient and BN buffer and the next forward match."""
    nets = [seeded_model(factory, s).double() for s in SEEDS]
    stacked = build_stacked(factory, SEEDS).double()
    for i, net in enumerate(nets):  # same initialisation as K separate seeded runs
        for key, value in net.state_dict().items():
            assert torch.equal(unstack_state(stacked, i)[key], value), key
    z = torch.rand(len(SEEDS), 32, *SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = torch.rand(len(SEEDS), 3, *SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    out = stacked(z)
    sep = [n(z[i : i + 1]) for i, n in enumerate(nets)]  # one forward each: BN running stats move once
    torch.testing.assert_close(out, torch.cat(sep), rtol=0, atol=1e-12)

    opt = torch.optim.Adam(stacked.parameters(), lr=0.01)
    opts = [torch.optim.Adam(n.parameters(), lr=0.01) for n in nets]
    (out - target).square().mean(dim=(1, 2, 3)).sum().backward()
    for i, o in enumerate(sep):
        (o - target[i : i + 1]).square().mean().backward()
    grads = dict(stacked.named_parameters())
    for i, n in enumerate(nets):
        for name, p in n.named_parameters():
            g = grads[name].grad.chunk(len(SEEDS), dim=0)[i]
            torch.testing.assert_close(g, p.grad, rtol=1e-9, atol=1e-14, msg=name)
    opt.step()
    for o in opts:
        o.step()
    for i, n in enumerate(nets):
        for key, value in n.state_dict().items():
            torch.testing.assert_close(unstack_state(stacked, i)[key], value, rtol=0, atol=1e-9, msg=key)
    torch.testing.assert_close(stacked(z), torch.cat([n(z[i : i + 1]) for i, n in enumerate(nets)]),
                               rtol=0, atol=1e-9)


def test_stacked_float32_forward_and_errors():
    stacked = build_stacked(factory, SEEDS[:2])
    nets = [seeded_model(factory, s) for s in SEEDS[:2]]
    z = torch.rand(2, 32, *SIZE)
    torch.testing.assert_close(stacked(z), torch.cat([n(z[i : i + 1]) for i, n in enumerate(nets)]),
                               rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit 2 stacked runs"):
        stacked(z[:1])
    with pytest.raises(ValueError, match="same configuration"):
        stack_models([factory(), SkipNet(channels_down=(4,) * 3, channels_up=(8,) * 3, channels_skip=(2,) * 3)])
    with pytest.raises(ValueError, match="too small"):
        stacked.check_size(8, 40)
    with pytest.raises(ValueError, match="2 outputs for 3 losses"):
        StackedLoss([lambda x: x.sum()] * 3)(torch.zeros(2, 3, 4, 4))


def test_stack_of_the_paper_network_has_k_times_its_parameters():
    from bpdip.models import count_parameters

    assert count_parameters(StackedSkipNet(stack=3)) == 3 * count_parameters(SkipNet())


@pytest.mark.parametrize("default_dtype,tol_db", [(torch.float64, 1e-9), (torch.float32, 0.15)],
                         indirect=["default_dtype"])
def test_restore_stacked_k2_equals_two_separate_runs(problem, default_dtype, tol_db):
    """The whole loop: z, noise, losses, Adam, logging. float64 makes it exact up to
    rounding; float32 differs only by rounding (Adam amplifies it in the weights that
    BatchNorm makes irrelevant, e.g. conv biases): measured 0.003-0.02 dB here, depending
    on the CPU's kernels and threads, so the bound leaves room for other CPUs."""
    dtype = default_dtype
    _, xs, ys = problem
    losses = losses_for(problem, dtype)
    settings = LoopSettings(iterations=21, log_every=5, progress=False)
    x, y = tensors(xs, dtype), tensors(ys, dtype)
    seeds = SEEDS[:2]
    separate = [restore(seeded_model(factory, s).to(dtype), losses[i], y[i : i + 1], [f"r{i}"], settings,
                        x_true=x[i : i + 1], seed=s, device="cpu")[0] for i, s in enumerate(seeds)]
    stacked = restore(build_stacked(factory, seeds).to(dtype), StackedLoss(losses), y, ["r0", "r1"], settings,
                      x_true=x, seed=seeds, device="cpu", engine={"stack": 2})
    for a, b in zip(separate, stacked):
        assert [r["iteration"] for r in b.curve] == [0, 5, 10, 15, 20]
        for ra, rb in zip(a.curve, b.curve):
            assert abs(ra["psnr"] - rb["psnr"]) < tol_db
            assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-12 if dtype == torch.float64 else 1e-2)
        assert abs(a.final["psnr"] - b.final["psnr"]) < tol_db
    # the two runs really differ (different seeds, images and losses): not a vacuous match
    assert abs(stacked[0].curve[-1]["psnr"] - stacked[1].curve[-1]["psnr"]) > 0.5


class Kill(Callback):
    def on_log(self, result, record):
        if record["iteration"] == 10:
            raise KeyboardInterrupt


def test_per_sample_seeds_checkpoint_and_resume(problem, tmp_path, caplog):
    """Per-sample generator states go into the checkpoint; a resumed stacked run equals an
    uninterrupted one exactly (CPU)."""
    _, xs, ys = problem
    losses = StackedLoss(losses_for(problem, torch.float32))
    x, y = tensors(xs), tensors(ys)
    settings = LoopSettings(iterations=14, log_every=2, checkpoint_every=4, progress=False)
    kw = dict(x_true=x, seed=[1, 2], device="cpu")
    ref = restore(build_stacked(factory, [1, 2]), losses, y, ["a", "b"], settings, **kw)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        restore(build_stacked(factory, [1, 2]), losses, y, ["a", "b"], settings, checkpoint=ckpt, callbacks=[Kill()],
                **kw)
    assert isinstance(torch.load(ckpt, weights_only=True)["generator"], list)
    resumed = restore(build_stacked(factory, [1, 2]), losses, y, ["a", "b"], settings, checkpoint=ckpt, **kw)
    for a, b in zip(ref, resumed):
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in a.curve] == \
               [{k: v for k, v in r.items() if k != "seconds"} for r in b.curve]
        np.testing.assert_array_equal(a.image, b.image)
    with pytest.raises(ValueError, match="3 seeds for a batch of 2"):
        restore(build_stacked(factory, [1, 2]), losses, y, ["a", "b"], settings, seed=[1, 2, 3], device="cpu")
    # a checkpoint of per-sample seeds does not fit a one-seed run: set aside, trained from 0
    [a, b] = restore(build_stacked(factory, [1, 2]), losses, y, ["a", "b"], settings, checkpoint=ckpt, seed=1,
                     device="cpu")
    assert f"ignoring checkpoint {ckpt} (wrong generator state" in caplog.text
    assert a.iterations == settings.iterations and [r["iteration"] for r in a.curve] == [*range(0, 14, 2), 13]


def test_seed_list_of_one_equals_single_seed(problem):
    _, xs, ys = problem
    loss = losses_for(problem, torch.float32)[0]
    settings = LoopSettings(iterations=6, log_every=2, progress=False)
    run = lambda seed: restore(seeded_model(factory, 3), loss, tensors(ys[:1]), ["f"], settings,  # noqa: E731
                               x_true=tensors(xs[:1]), seed=seed, device="cpu")[0]
    a, b = run(7), run([7])
    assert [r["psnr"] for r in a.curve] == [r["psnr"] for r in b.curve]
    np.testing.assert_array_equal(a.image, b.image)


# ---------------------------------------------------------------- engine variants on the CPU


@pytest.mark.parametrize("engine,tol_db", [({"channels_last": True}, 0.05), ({"precision": "bf16"}, 1.5)])
def test_engine_variants_follow_the_fp32_run(problem, engine, tol_db):
    """channels_last changes rounding only; bf16 autocast is coarser (a CPU smoke test of
    the path; the GPU quality check is scripts/bench.py --quality)."""
    _, xs, ys = problem
    loss = losses_for(problem, torch.float32)[0]
    settings = LoopSettings(iterations=11, log_every=5, progress=False)
    run = lambda eng: restore(build_stacked(factory, [4]), loss, tensors(ys[:1]), ["f"], settings,  # noqa: E731
                              x_true=tensors(xs[:1]), seed=[4], device="cpu", engine=eng)[0]
    ref, other = run({}), run(engine)
    assert other.status == "complete" and other.image.dtype == np.float32
    for ra, rb in zip(ref.curve, other.curve):
        assert abs(ra["psnr"] - rb["psnr"]) < tol_db
    assert ref.curve[-1]["psnr"] > ref.curve[0]["psnr"] + 1.0  # it did train
    # several runs per process: the variant left no state behind (flags, autocast, layout)
    again = run({})
    assert [r["psnr"] for r in again.curve] == [r["psnr"] for r in ref.curve]


def test_compiled_step_follows_the_eager_run(problem, monkeypatch):
    """engine.compile=true through restore(): the network is compiled once per run, dynamo
    traces it whole (forward and backward) with no graph break, and the curve follows the
    eager run's to float32 rounding. The "aot_eager" backend stands in for inductor, which
    takes about a minute to build C++ kernels on this CPU (scripts/bench.py times it)."""
    import functools

    from torch._dynamo.utils import counters

    compiled = []
    real = torch.compile

    def spy(model, **kw):
        compiled.append(model)
        return functools.partial(real, backend="aot_eager")(model, **kw)

    monkeypatch.setattr(torch, "compile", spy)
    _, xs, ys = problem
    loss = losses_for(problem, torch.float32)[0]
    settings = LoopSettings(iterations=7, log_every=2, progress=False)
    run = lambda eng: restore(seeded_model(factory, 4), loss, tensors(ys[:1]), ["f"], settings,  # noqa: E731
                              x_true=tensors(xs[:1]), seed=4, device="cpu", engine=eng)[0]
    eager = run({})
    counters.clear()
    other = run({"compile": True})
    assert len(compiled) == 1 and isinstance(compiled[0], SkipNet)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert [r["iteration"] for r in other.curve] == [0, 2, 4, 6]
    for ra, rb in zip(eager.curve, other.curve):
        assert abs(ra["psnr"] - rb["psnr"]) < 0.01 and rb["loss"] == pytest.approx(ra["loss"], rel=1e-3)
    assert abs(eager.final["psnr"] - other.final["psnr"]) < 0.01
    assert eager.curve[-1]["psnr"] > eager.curve[0]["psnr"] + 1.0  # it trained


def test_warm_up_steps_are_rewound_exactly(problem):
    """A graph capture is preceded by warm-up steps that must leave no trace. On the CPU the
    same warm-up + rewind runs without the capture: the steps after it are bit-identical to
    those of a run that never warmed up, for a fresh and for a half-trained optimiser."""
    loss = losses_for(problem, torch.float32)[0]
    eng = EngineSettings(precision="fp32", cuda_graphs=False, warmup=3)
    z = torch.rand(1, 32, *SIZE, generator=torch.Generator().manual_seed(0))
    noises = torch.randn(6, 1, 32, *SIZE, generator=torch.Generator().manual_seed(1))

    def run(warm_at):
        model = seeded_model(factory, 2)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        step = TrainStep(model, loss, z, 0.03, opt, eng, "cpu")
        losses = []
        for i, n in enumerate(noises):
            step.noise.copy_(n)
            if i == warm_at:
                step.warm_up_and_rewind()
                assert torch.equal(step.noise, n)  # the caller's noise is put back too
            losses.append(step()[1].item())
        return losses, model.state_dict()

    ref, ref_state = run(None)
    for warm_at in (0, 3):
        losses, state = run(warm_at)
        assert losses == ref
        assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)


# ---------------------------------------------------------------- settings and flags


def test_engine_settings_resolve_and_validate():
    cpu, cuda = EngineSettings().resolve("cpu"), EngineSettings().resolve("cuda")
    assert (cpu.precision, cpu.cuda_graphs, cpu.fused_adam) == ("fp32", False, False)
    assert (cuda.precision, cuda.cuda_graphs, cuda.cudnn_benchmark, cuda.fused_adam) == ("tf32", True, True, True)
    assert EngineSettings(precision="tf32").resolve("cpu").precision == "fp32"
    assert EngineSettings(precision="bf16", compile=True).resolve("cuda").label() == "bf16+compile+graphs"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        EngineSettings(cuda_graphs=True).resolve("cpu")
    with pytest.raises(ValueError, match="engine.precision must be one of"):
        EngineSettings(precision="fp16")
    with pytest.raises(ValueError, match="engine.stack must be an integer >= 1"):
        EngineSettings(stack=0)
    with pytest.raises(ValueError, match=r"unknown engine option\(s\) \['graphs'\]"):
        EngineSettings.from_config({"graphs": True})


def test_engine_presets_compose_with_hydra():
    from hydra import compose, initialize_config_dir

    from bpdip.data import DATA_ROOT

    conf = DATA_ROOT.parent / "conf" / "engine"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        default = EngineSettings.from_config(compose(config_name="default"))
        strict = EngineSettings.from_config(compose(config_name="strict"))
        stack4 = EngineSettings.from_config(compose(config_name="stack4"))
    assert default == EngineSettings()  # the yaml mirrors the dataclass defaults
    assert strict.resolve("cuda").label() == "fp32" and stack4.stack == 4


def test_backend_flags_set_and_restore_tf32():
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    with backend_flags(EngineSettings(precision="fp32").resolve("cuda")):
        # strict fp32 must switch off cuDNN's default TF32 convolutions
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.benchmark
    with backend_flags(EngineSettings(precision="tf32").resolve("cuda")):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.benchmark) == before


def test_group_by_size_keeps_order_and_sizes():
    items = [("a", 5), ("b", 6), ("c", 5), ("d", 5), ("e", 6)]
    groups = group_by_size(items, lambda it: (it[1], it[1]), 2)
    assert groups == [[("a", 5), ("c", 5)], [("d", 5)], [("b", 6), ("e", 6)]]


# ---------------------------------------------------------------- FLOP count


@pytest.mark.parametrize("h,w,net", [(37, 45, SLIM), (45, 70, dict(channels_down=(8, 6, 5), channels_up=(7, 8, 3),
                                                                    channels_skip=(2, 0, 3))), (64, 64, {})])
def test_count_flops_equals_torch_flop_counter(h, w, net):
    """Independent count: torch's FlopCounterMode over a real forward + backward (z needs
    no gradient, as in training)."""
    model = SkipNet(**net)
    z = torch.rand(1, 32, h, w)
    with FlopCounterMode(display=False) as fwd:
        out = model(z)
    with FlopCounterMode(display=False) as train:
        model(z).sum().backward()
    ours = count_flops(h, w, **net)
    assert ours["forward"] == fwd.get_total_flops() and ours["train"] == train.get_total_flops()
    assert out.shape[-2:] == (h, w)
    if not net:  # the paper's network: PROTOCOL's ~0.59 MFLOP/pixel forward, ~1.8 per iteration
        assert 0.55e6 < ours["per_pixel_forward"] < 0.63e6 and 1.65e6 < ours["per_pixel_train"] < 1.9e6


def test_count_flops_of_a_stack():
    """A stack's forward counted by torch equals ours; its training step is K single ones
    (torch's counter over-counts the backward of grouped convolutions, so the training
    count is checked against K separate networks instead)."""
    model = build_stacked(factory, [1, 2])
    z = torch.rand(2, 32, *SIZE)
    with FlopCounterMode(display=False) as fwd:
        model(z)
    with FlopCounterMode(display=False) as single:
        factory()(z[:1]).sum().backward()
    ours = count_flops(*SIZE, **SLIM, stack=2)
    assert ours["forward"] == fwd.get_total_flops() and ours["train"] == 2 * single.get_total_flops()


# ---------------------------------------------------------------- graphed path, emulated


def _emulated_capture(fail: bool = False):
    """Stands in for torch.cuda.graph: the step's body runs once in Python, but without the
    loop's per-step hook (the stopping rules, the output streams): a real capture records
    those kernels without running them, and the rewind only undoes the network's steps."""
    import contextlib

    @contextlib.contextmanager
    def graph(*args, **kwargs):
        st = _ReplayGraph.step
        st._warming = True
        try:
            yield
        finally:
            st._warming = False
        if fail:
            raise RuntimeError("operation not permitted when stream is capturing")

    return graph


class _ReplayGraph:
    """Stands in for torch.cuda.CUDAGraph on the CPU: ``replay`` re-runs the captured step
    and writes into the static outputs, as a replayed capture does (its backward writes
    the .grad buffers rather than adding to them)."""

    step = None

    def replay(self):
        st = _ReplayGraph.step
        st.opt.zero_grad(set_to_none=True)
        out, loss = st._body()
        st.static_out.copy_(out)
        st.static_loss.copy_(loss)


def test_graphed_step_plumbing_equals_eager(problem, monkeypatch):
    """The CUDA-graph path of TrainStep and restore (warm-up on throw-away noise, capture,
    rewind, replays into static outputs read by the loop), run on the CPU with the graph
    emulated: a Python "capture" executes the step once, which the rewind must undo. The
    curve equals the eager run's exactly. The real capture is checked on a GPU by
    scripts/bench.py (its float64 "CUDA graph step == eager step" check)."""
    import bpdip.loop as loop_module

    class GraphedOnCpu(TrainStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.graphed = True
            _ReplayGraph.step = self

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _ReplayGraph)
    monkeypatch.setattr(torch.cuda, "graph", _emulated_capture())
    _, xs, ys = problem
    loss = losses_for(problem, torch.float32)[0]
    settings = LoopSettings(iterations=9, log_every=2, progress=False)
    run = lambda: restore(seeded_model(factory, 6), loss, tensors(ys[:1]), ["f"], settings,  # noqa: E731
                          x_true=tensors(xs[:1]), seed=6, device="cpu")[0]
    eager = run()
    monkeypatch.setattr(loop_module, "TrainStep", GraphedOnCpu)
    graphed = run()
    assert _ReplayGraph.step.graph is None  # closed after the run
    assert [(r["psnr"], r["loss"]) for r in graphed.curve] == [(r["psnr"], r["loss"]) for r in eager.curve]
    np.testing.assert_array_equal(graphed.image, eager.image)


def test_a_failed_capture_falls_back_to_eager_steps_with_a_warning(problem, monkeypatch):
    """engine.cuda_graphs=auto must not crash a run when a capture fails on some GPU or
    torch version: the warm-up is rewound, the run goes on eagerly and its curve equals the
    eager run's exactly (emulated on the CPU: the "capture" raises). An explicit
    cuda_graphs=true lets the error through."""
    import bpdip.loop as loop_module

    class CaptureFails(TrainStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.graphed = True
            _ReplayGraph.step = self

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _ReplayGraph)
    monkeypatch.setattr(torch.cuda, "graph", _emulated_capture(fail=True))
    _, xs, ys = problem
    loss = losses_for(problem, torch.float32)[0]
    settings = LoopSettings(iterations=9, log_every=2, progress=False)
    run = lambda: restore(seeded_model(factory, 6), loss, tensors(ys[:1]), ["f"], settings,  # noqa: E731
                          x_true=tensors(xs[:1]), seed=6, device="cpu", engine={"cuda_graphs": "auto"})[0]
    eager = run()
    monkeypatch.setattr(loop_module, "TrainStep", CaptureFails)
    with pytest.warns(UserWarning, match="CUDA-graph capture failed"):
        fell_back = run()
    assert [(r["psnr"], r["loss"]) for r in fell_back.curve] == [(r["psnr"], r["loss"]) for r in eager.curve]
    np.testing.assert_array_equal(fell_back.image, eager.image)

    model = seeded_model(factory, 6)
    step = CaptureFails(model, loss, torch.rand(1, 32, *SIZE), 0.03, torch.optim.Adam(model.parameters()),
                        EngineSettings(precision="fp32", cuda_graphs=False), "cpu", graph_fallback=False)
    with pytest.raises(RuntimeError, match="stream is capturing"):
        step()


def test_resume_into_channels_last_keeps_the_optimiser_state(problem, tmp_path):
    """A checkpoint written by an NCHW run resumes under engine.channels_last: the Adam
    moments take the parameters' new strides and keep their values (same curve, up to the
    rounding of the other layout)."""
    _, xs, ys = problem
    loss = losses_for(problem, torch.float32)[0]
    settings = LoopSettings(iterations=12, log_every=3, checkpoint_every=6, progress=False)
    kw = dict(x_true=tensors(xs[:1]), seed=[3], device="cpu")
    ref = restore(build_stacked(factory, [3]), loss, tensors(ys[:1]), ["f"], settings, **kw)[0]
    ckpt = tmp_path / "ckpt.pt"

    class Stop(Callback):
        def on_checkpoint(self, iteration, path):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore(build_stacked(factory, [3]), loss, tensors(ys[:1]), ["f"], settings, checkpoint=ckpt,
                callbacks=[Stop()], **kw)
    model = build_stacked(factory, [3])
    resumed = restore(model, loss, tensors(ys[:1]), ["f"], settings, checkpoint=ckpt,
                      engine={"channels_last": True}, **kw)[0]
    conv = model.body.post[0][1].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(ref.curve, resumed.curve):
        assert abs(a["psnr"] - b["psnr"]) < 0.05
    assert resumed.curve[:2] == [{**r, "seconds": resumed.curve[i]["seconds"]} for i, r in enumerate(ref.curve[:2])]


def test_optimiser_state_takes_the_channels_last_strides(problem):
    loss = losses_for(problem, torch.float32)[0]
    model = seeded_model(factory, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.rand(1, 32, *SIZE)).sum().backward()
    opt.step()  # NCHW moments, as a checkpoint of an NCHW run holds them
    before = {p: {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
    TrainStep(model, loss, torch.rand(1, 32, *SIZE), 0.03, opt, EngineSettings(precision="fp32", cuda_graphs=False,
              channels_last=True), "cpu")
    four_d = [p for p in model.parameters() if p.ndim == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    for p, state in opt.state.items():
        for k, v in state.items():
            if v.shape == p.shape:
                assert v.stride() == p.stride()
            assert torch.equal(v, before[p][k])


# ---------------------------------------------------------------- the CPU default (issue 21)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_cpu_auto_picks_bf16_with_channels_last_only_where_it_pays(monkeypatch, has_bf16):
    """precision=auto on a CPU: bf16 + channels_last for a paper-sized network on a CPU with
    bf16 in hardware, fp32 (NCHW) for the small net or on other CPUs; channels_last=auto also
    follows an explicit bf16 there; a GPU keeps tf32 in NCHW; explicit values win."""
    import bpdip.engine.settings as settings_module
    from bpdip.engine.settings import CPU_BF16_MIN_PARAMETERS

    monkeypatch.setattr(settings_module, "cpu_has_bf16", lambda: has_bf16)
    auto = EngineSettings()
    paper = SkipNet()
    small = SkipNet(channels_down=(16,) * 4, channels_up=(16,) * 4, channels_skip=(4,) * 4)
    n_paper, n_small = settings_module.network_parameters(paper), settings_module.network_parameters(small)
    assert n_small < CPU_BF16_MIN_PARAMETERS <= n_paper
    wide = auto.resolve("cpu", n_paper)
    assert (wide.precision, wide.channels_last, wide.compile) == (("bf16", True, False) if has_bf16
                                                                 else ("fp32", False, False))
    assert wide.label() == ("bf16+cl" if has_bf16 else "fp32")
    assert (auto.resolve("cpu", n_small).precision, auto.resolve("cpu", n_small).channels_last) == ("fp32", False)
    assert auto.resolve("cpu").precision == "fp32"  # no network given: the conservative choice
    gpu = auto.resolve("cuda", n_paper)
    assert (gpu.precision, gpu.channels_last) == ("tf32", False)
    assert EngineSettings(precision="fp32").resolve("cpu", n_paper).precision == "fp32"
    explicit = EngineSettings(precision="bf16").resolve("cpu", n_small)
    assert (explicit.precision, explicit.channels_last) == ("bf16", True)
    assert EngineSettings(precision="bf16", channels_last=False).resolve("cpu").channels_last is False
    # a stacked model counts one network
    assert settings_module.network_parameters(build_stacked(factory, [1, 2, 3])) == \
        settings_module.network_parameters(factory())
    with pytest.raises(ValueError, match="engine.channels_last must be true, false or auto"):
        EngineSettings(channels_last="yes")
    with pytest.raises(ValueError, match="engine.compile must be true or false"):
        EngineSettings(compile="auto")


def test_cpu_default_keeps_the_small_net_ids_and_separates_bf16_records(monkeypatch, compose_config):
    """The precision stays in the run id: on a bf16 CPU the paper net's auto runs are bf16
    records with their own ids, while the small CPU-scale net's auto runs keep exactly the
    ids of explicit fp32 (so the committed fp32 records stay valid)."""
    import bpdip.engine.settings as settings_module
    from bpdip.runner.plan import plan_cell

    monkeypatch.setattr(settings_module, "cpu_has_bf16", lambda: True)

    def plan(*overrides):
        return plan_cell(compose_config("device=cpu", "data.images=[face]", "data.crop=48", *overrides))

    small_auto, small_fp32 = plan("model=small"), plan("model=small", "engine.precision=fp32")
    assert small_auto.config_hash == small_fp32.config_hash
    assert small_auto.tasks[0].run_id == small_fp32.tasks[0].run_id
    assert small_auto.engine("cpu").label() == "fp32"
    paper_auto, paper_fp32 = plan(), plan("engine.precision=fp32")
    assert paper_auto.result_config["engine"]["precision"] == "bf16"
    assert paper_auto.config_hash != paper_fp32.config_hash
    assert paper_auto.engine("cpu").label() == "bf16+cl"
    # channels_last is speed-only: not in the id
    assert plan("engine.channels_last=false").config_hash == paper_auto.config_hash


def test_cpu_bf16_channels_last_run_follows_fp32(problem):
    """The CPU default's wide-net path (bf16 autocast, channels_last) through restore(): the
    curve follows the fp32 run's within bf16 rounding, and the network really ran NHWC."""
    _, xs, ys = problem
    loss = losses_for(problem, torch.float32)[0]
    settings = LoopSettings(iterations=9, log_every=4, progress=False)
    models = []

    def run(eng):
        models.append(seeded_model(factory, 2))
        return restore(models[-1], loss, tensors(ys[:1]), ["f"], settings, x_true=tensors(xs[:1]), seed=2,
                       device="cpu", engine=eng)[0]

    ref, fast = run({"precision": "fp32"}), run({"precision": "bf16"})
    conv = next(m for m in models[-1].modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(ref.curve, fast.curve):
        assert abs(a["psnr"] - b["psnr"]) < 0.5
    assert fast.curve[-1]["psnr"] > fast.curve[0]["psnr"] + 1.0

"""From a Hydra config to a checked plan of one cell: everything that can be wrong with
the config or the data is found here, before any training starts."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bpdip.data import center_crop, read_image, resolve_images
from bpdip.engine.settings import network_parameters
from bpdip.loop import LoopSettings, resolve_device
from bpdip.losses import FIDELITIES, make_loss
from bpdip.models import build_model
from bpdip.physics import Blur, SuperResolution, ValidBlur, crop_to_multiple, derive_seed, make_kernel, noise_sigma
from bpdip.physics.sr import check_factor, check_multiple
from bpdip.registry import is_import_path, source_sha256
from bpdip.runner.boundary import BoundarySettings
from bpdip.runner.checks import check_threads, integer
from bpdip.stopping import StopSettings
from bpdip.streams import OutputSettings
from bpdip.store import digest, file_sha256, make_run_id, result_config

# loss config keys that are not parameters of the fidelity class
LOSS_KEYS = ("name", "fidelity", "tv_weight", "iterations")


class UserError(Exception):
    """A problem with the config or the data, reported as one line before any training."""


# kernels that make sense for super-resolution (conf/task/sr.yaml): the antialiasing
# kernels of imresize and DIP, a Gaussian (IDBP's), a file or your own (import path)
SR_KERNELS = ("bicubic", "lanczos2", "gaussian", "file")
SCALED_KERNELS = ("bicubic", "lanczos2")  # their scale is the SR factor (conf/kernel/bicubic.yaml)
LR_SOURCES = ("operator", "pil")


@dataclass(frozen=True)
class SRSettings:
    """task=sr (conf/task/sr.yaml): the factor s, the Y-PSNR border, where y comes from."""

    factor: int
    shave: int = 4
    lr_source: str = "operator"
    crop_multiple: bool = True

    @property
    def label(self) -> str:
        """The record's ``run.cell.task``: sr-x4, or sr-x4-pil for DIP's LR."""
        return f"sr-x{self.factor}" + ("-pil" if self.lr_source == "pil" else "")

    def hr(self, x: np.ndarray) -> np.ndarray:
        """The HR ground truth: centre-cropped to a multiple of s, or checked to be one."""
        if self.crop_multiple:
            return crop_to_multiple(x, self.factor)
        check_multiple(x.shape[:2], self.factor)  # ValueError: one line, with the fix
        return x

    @classmethod
    def from_config(cls, task: dict, config: dict, kernel_name: str, kcfg: dict) -> "SRSettings | None":
        """None for deblurring; for task=sr the checked settings (ValueError: one line)."""
        if task.get("name") == "deblur":
            if kernel_name in SCALED_KERNELS and kcfg.get("factor") is None:
                raise ValueError(f"kernel={kernel_name} is a super-resolution kernel whose scale is sr.factor: "
                                 f"use it with task=sr (or set kernel.factor=...)")
            return None
        if task.get("name") != "sr":
            raise ValueError(f"task={task.get('name')} is not known; use task=deblur or task=sr")
        sr = config.get("sr")
        if not isinstance(sr, dict):
            raise ValueError("task=sr needs its sr block (conf/task/sr.yaml); select it with task=sr")
        factor = check_factor(sr.get("factor"))
        shave = sr.get("shave", 4)
        if isinstance(shave, bool) or not isinstance(shave, int) or shave < 0:
            raise ValueError(f"sr.shave must be an integer >= 0 (pixels shaved before the Y-PSNR), got {shave!r}")
        source = sr.get("lr_source", "operator")
        if source not in LR_SOURCES:
            raise ValueError(f"sr.lr_source must be one of {', '.join(LR_SOURCES)}, got {source!r}")
        crop = sr.get("crop_multiple", True)
        if not isinstance(crop, bool):
            raise ValueError(f"sr.crop_multiple must be true or false, got {crop!r}")
        if kernel_name not in SR_KERNELS and not is_import_path(kernel_name):
            raise ValueError(f"kernel={kernel_name} is a deblurring kernel; task=sr takes kernel=bicubic (default), "
                             f"lanczos2, gaussian or file")
        if kernel_name in SCALED_KERNELS and kcfg.get("factor") != factor:
            raise ValueError(f"kernel={kernel_name} has kernel.factor={kcfg.get('factor')!r} but sr.factor={factor}; "
                             f"leave kernel.factor to follow sr.factor")
        schedule = sr.get("dip_schedule")
        if schedule is not None and str(factor) not in schedule:
            raise ValueError(f"experiment=sr_set14_dip has DIP's schedule for sr.factor={' and '.join(schedule)} "
                             f"only, not {factor}")
        return cls(factor, shave, source, crop)


@dataclass
class ImageTask:
    name: str
    path: Path
    shape: tuple[int, int]
    sha256: str
    run_id: str
    frame: tuple[int, int, int, int] | None = None  # boundary=valid: y's frame in x (shape is x's)
    bit_depth: int = 8  # bits per sample of the file (bpdip.data.read_image): 8 or 16


@dataclass
class CellPlan:
    config: dict  # the resolved config, plain data
    cell: dict  # kernel, noise_var, loss: the record's key (bpdip.records)
    cell_name: str  # e.g. uniform-0.3-bp
    kernel: np.ndarray
    noise_var: float
    sigma: float
    fidelity: str
    tv_weight: float
    loss_params: dict
    model_params: dict
    settings: LoopSettings
    seed: int
    crop: int | list | None
    result_config: dict
    config_hash: str
    stop: StopSettings = field(default_factory=StopSettings)
    observed: bool = False  # data=observed: the images are the measurements y; no ground truth
    # data=observed data.truth (issue 32's evidence): image name -> its ground truth on y's frame,
    # read only to measure the run (curves, oracles); the loss never sees it
    truths: dict = field(default_factory=dict)
    protocol_hash: str = ""  # config_hash without the seed: seeds of one protocol share it
    tasks: list[ImageTask] = field(default_factory=list)
    sr: SRSettings | None = None  # task=sr; None: deblurring
    boundary: BoundarySettings = field(default_factory=BoundarySettings)
    output: OutputSettings = field(default_factory=OutputSettings)  # cfg.output (bpdip.streams)
    network_parameters: int | None = None  # of one network: the engine's CPU rule reads it

    def engine(self, device) -> "EngineSettings":
        """The engine settings a job of this plan runs with on ``device`` (bpdip.engine)."""
        from bpdip.engine import EngineSettings

        return EngineSettings.from_config(self.config.get("engine")).resolve(
            device, self.network_parameters)

    def operator(self, shape: tuple[int, int], device="cpu"):
        """The degradation A of an image of ``shape`` (x's size: the HR size for SR, the
        extended size for boundary=valid): the circular blur (paper eq. 1), A = S H
        (bpdip.physics.sr) or the valid blur (bpdip.physics.valid)."""
        if self.boundary.valid:
            frame = self.boundary.frame(shape, self.kernel)
            return ValidBlur(self.kernel, frame[2:], device=device, cg_tol=self.boundary.cg_tol,
                             cg_max_iter=self.boundary.cg_max_iter, fft_grid=self.boundary.fft_grid)
        if self.sr is None:
            return Blur(self.kernel, shape, device=device)
        return SuperResolution(self.kernel, shape, self.sr.factor, device=device)

    def ground_truth(self, x: np.ndarray) -> np.ndarray:
        """The image after ``data.crop``, as the run sees it (for SR cropped to a multiple of s;
        for boundary=valid the crop grown by the kernel's reach, bpdip.runner.boundary)."""
        if self.boundary.valid and not self.observed:
            return self.boundary.window(x, self.crop, self.kernel)
        x = center_crop(x, self.crop)
        return x if self.sr is None else self.sr.hr(x)

    def seeds(self, image: str) -> dict:
        """Per-image seeds from (run seed, image name, purpose) only, so an image gets the
        same noise, initial network and z alone or in any set (PROTOCOL "Degradation")."""
        return {k: derive_seed(self.seed, image, k) for k in ("noise", "model", "z")}


def original_cwd() -> Path:
    """Where run.py was launched (relative paths in the config start there)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.cwd)
    return Path.cwd()


def absolute(path) -> Path | None:
    if path in (None, ""):
        return None
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else original_cwd() / p


def cell_name(kernel: str, noise_var: float, loss: str, task: str | None = None) -> str:
    """``uniform-0.3-bp``; for SR the task first, ``sr-x4-bicubic-0-bp`` (deblurring: no prefix)."""
    return (f"{task}-" if task else "") + f"{kernel}-{noise_var:g}-{loss}"


def job_device_type(spec) -> str:
    """"cuda" or "cpu": where a job with ``device=spec`` runs (bpdip.loop.resolve_device)."""
    try:
        return resolve_device(str(spec)).type
    except RuntimeError as exc:  # an unknown device string, or cuda on a machine without one
        raise ValueError(f"device={spec}: {str(exc).splitlines()[0]}") from None


def progress_flag(value) -> bool:
    if isinstance(value, str) and value.lower() == "auto":
        return sys.stderr.isatty()
    return bool(value)


def plan_cell(cfg: DictConfig | dict) -> CellPlan:
    try:
        return _plan(cfg)
    except UserError:
        raise
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        msg = str(exc).splitlines()[0]
        raise UserError(f"config: {msg}" + (f" (set {key}=... on the command line)" if "issing" in msg else "")) from None
    except (ValueError, FileNotFoundError, TypeError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None


def _plan(cfg) -> CellPlan:
    config = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    kcfg, lcfg, dcfg, mcfg = (dict(config[k]) for k in ("kernel", "loss", "data", "model"))
    seed = integer(config["seed"], "seed", meaning="the run seed")
    check_threads(config.get("threads"))

    try:
        noise_var = float(config["noise"]["var"])
    except (TypeError, ValueError):
        raise UserError(f"noise.var must be a number (a variance on the 0..255 scale), got {config['noise']['var']!r}")
    sigma = noise_sigma(noise_var)  # ValueError for a negative or non-finite variance

    kname = kcfg.pop("name")
    task = dict(config.get("task") or {"name": "deblur"})
    sr = SRSettings.from_config(task, config, kname, kcfg)  # ValueError: one line
    boundary = BoundarySettings.from_config(config.get("boundary"))  # ValueError: one line
    if boundary.valid and sr is not None and dcfg.get("name") != "observed":  # observed: its own line below
        raise UserError("boundary=valid is for deblurring; task=sr uses the circular model (boundary=circular)")
    kernel = make_kernel(kname, path=absolute(kcfg.pop("path", None)), **kcfg)

    fidelity = lcfg.get("fidelity")
    if fidelity not in FIDELITIES and not is_import_path(fidelity):
        raise UserError(f"loss.fidelity must be one of {sorted(FIDELITIES)} or an import path "
                        f"(mypkg.module.Name), got {fidelity!r}")
    tv_weight = float(lcfg.get("tv_weight") or 0.0)
    loss_params = {k: v for k, v in lcfg.items() if k not in LOSS_KEYS}
    # build the loss once on a tiny problem: bad weights or unknown parameters fail now
    size = max(kernel.shape) + 2
    if sr is not None:
        size = -(-size // sr.factor) * sr.factor  # a multiple of s
    probe = Blur(kernel, (size, size)) if sr is None else SuperResolution(kernel, (size, size), sr.factor)
    if boundary.valid:
        probe = ValidBlur(kernel, (size, size))
    size = probe.out_shape[0]  # y lives on the measurement grid
    make_loss(fidelity, probe, torch.zeros(1, 3, size, size), sigma, tv_weight, **loss_params)

    stop = StopSettings.from_config(config.get("stop"))
    if boundary.valid and isinstance(config.get("engine"), dict):
        # conjugate gradients test convergence on the host: a CUDA graph cannot hold them
        if config["engine"].get("cuda_graphs") is True:
            raise UserError("boundary=valid solves BP by conjugate gradients, which a CUDA graph cannot capture; "
                            "use engine.cuda_graphs=auto or false")
        config["engine"]["cuda_graphs"] = False
    output = OutputSettings.from_config(config.get("output"))
    if stop.early_rule is not None and stop.stream != "perturbed" and output.restore != stop.stream:
        raise UserError(f"stop.early on the {stop.stream} stream's rule returns that stream's image; set "
                        f"output.restore={stop.stream}, or stop.stream=perturbed")
    model_params = dict(mcfg)
    model = build_model(**model_params)
    settings = LoopSettings(
        iterations=integer(lcfg["iterations"], "loss.iterations", 1), lr=float(config["optim"]["lr"]),
        reg_noise_std=float(config["optim"]["reg_noise_std"]), input_depth=int(mcfg.get("in_channels", 32)),
        input_scale=float(config["optim"]["input_scale"]), log_every=integer(config["log_every"], "log_every", 1),
        checkpoint_every=integer(config.get("checkpoint_every") or 0, "checkpoint_every", 0,
                                 "iterations between checkpoints; 0: none"),
        progress=progress_flag(config.get("progress")),
    )
    engine = None
    if config.get("engine") is not None:  # how runs execute (bpdip.engine): unknown keys fail now
        from bpdip.engine import EngineSettings

        # resolved as the loop resolves it (the CPU rule reads the network's size)
        engine = EngineSettings.from_config(config["engine"]).resolve(
            job_device_type(config.get("device", "auto")), network_parameters(model))

    observed = dcfg.get("name") == "observed"
    if observed and sr is not None:
        raise UserError("data=observed (a file as y, no ground truth) is for deblurring only; task=sr needs HR images")
    if observed:  # a real blurred image without ground truth (conf/data/observed.yaml)
        paths = dcfg.get("path")
        paths = [paths] if isinstance(paths, str) else list(paths or [])
        if not paths:
            raise UserError("data=observed needs data.path=/path/to/blurred.png (or a list of paths)")
        missing = [str(absolute(p)) for p in paths if not absolute(p).is_file()]
        if missing:
            raise UserError(f"data.path: image not found: {missing[0]} (give the path of the blurred image)")
        refs = resolve_images([str(absolute(p)) for p in paths], None, original_cwd())
        truths = dcfg.get("truth")
        truths = [truths] if isinstance(truths, str) else list(truths or [])
        if truths and len(truths) != len(paths):
            raise UserError(f"data.truth gives {len(truths)} image(s) for {len(paths)} data.path image(s); "
                            "give one ground truth per observation, in the same order")
        absent = [str(absolute(p)) for p in truths if not absolute(p).is_file()]
        if absent:
            raise UserError(f"data.truth: image not found: {absent[0]}")
        truth_of = {ref.name: absolute(t) for ref, t in zip(refs, truths)}
    else:
        images = dcfg.get("images") or []
        if isinstance(images, str):  # data.images=face: one image (e.g. one job per image in a sweep)
            images = [images]
        refs = resolve_images([str(i) for i in images], absolute(dcfg.get("folder")), original_cwd())
    crop = dcfg.get("crop")
    if isinstance(crop, list):
        crop = tuple(crop)

    cell = {"kernel": kname, "noise_var": noise_var, "loss": str(lcfg.get("name", fidelity))}
    if sr is not None:  # deblurring cells keep exactly their three fields
        cell["task"] = sr.label
    if boundary.valid:  # circular cells keep theirs
        cell["boundary"] = boundary.name
    name = cell_name(cell["kernel"], noise_var, cell["loss"], cell.get("task"))
    rcfg = result_config(config, hashlib.sha256(np.ascontiguousarray(kernel).tobytes()).hexdigest())
    if engine is not None and isinstance(rcfg.get("engine"), dict):
        # "auto" means tf32 + fused Adam on a GPU and fp32 + plain Adam on a CPU: hash what runs
        rcfg["engine"].update(precision=engine.precision, fused_adam=engine.fused_adam)
    # your own code named by import path: its source is part of what a result depends on
    sources = {key: source_sha256(name) for key, name in (("loss.fidelity", fidelity), ("kernel.name", kname),
                                                          ("model.name", mcfg.get("name", "skip")))}
    if any(sources.values()):
        rcfg["extension_sha256"] = {k: v for k, v in sources.items() if v}
    if observed:  # data.name is bookkeeping, but a file read as y is not the same run as read as x
        rcfg["observed"] = True
    if not boundary.valid:
        # the paper's model, as before the boundary group existed: every circular id is unchanged
        rcfg.pop("boundary", None)
    elif fidelity == "ls" and isinstance(rcfg.get("boundary"), dict):
        # LS never solves (A A^T + eps I) u = r: the CG settings change nothing it computes
        for key in ("cg_tol", "cg_max_iter"):
            rcfg["boundary"].pop(key, None)
    if isinstance(rcfg.get("stop"), dict):
        # every rule's parameters, also a rule with no block in conf/stop/rules.yaml (its PARAMS):
        # the same values for the built-in rules, whose blocks the config already holds
        rcfg["stop"].update({rule: dict(params) for rule, params in stop.params.items()})
        if not stop.early:
            # every run evaluates every rule: without stop.early the named rule (and its stream) changes nothing
            rcfg["stop"].pop("name", None)
            rcfg["stop"].pop("stream", None)
    chash = digest(rcfg)
    protocol = digest({k: v for k, v in rcfg.items() if k != "seed"})
    plan = CellPlan(config, cell, name, kernel, noise_var, sigma, fidelity, tv_weight, loss_params,
                    model_params, settings, seed, crop, rcfg, chash, stop=stop,
                    protocol_hash=protocol, observed=observed, sr=sr, boundary=boundary, output=output,
                    network_parameters=network_parameters(model))
    if observed:
        plan.truths = truth_of
    for ref in refs:  # read every image now: a bad file fails before the first one trains
        read = read_image(ref.path)
        x = plan.ground_truth(read.pixels)
        h, w = boundary.x_shape(x.shape[:2], kernel) if observed else x.shape[:2]  # observed: x is y's file
        if hasattr(model, "check_size"):
            try:
                model.check_size(h, w)  # the network's output (and z) has the HR size
            except ValueError as exc:
                if (h, w) == x.shape[:2]:
                    raise
                # observed under valid: the network's x is the file grown by the kernel's reach
                raise UserError(f"image {ref.name} is {x.shape[0]}x{x.shape[1]} ({ref.path}); under boundary=valid "
                                f"the network restores it grown by the {kernel.shape[0]}x{kernel.shape[1]} kernel's "
                                f"reach to {h}x{w}: {str(exc).splitlines()[0]}") from None
        plan.operator((h, w))  # the kernel must fit in the image
        if sr is not None and 2 * sr.shave >= min(h, w):
            raise UserError(f"sr.shave={sr.shave} leaves nothing of the {h}x{w} image {ref.name}; lower sr.shave")
        sha = file_sha256(ref.path)
        # 16-bit RGB was read at 8 bits before issue 29: its id must not find those records
        # (every 8-bit and 16-bit grayscale id is unchanged)
        widened = read.bit_depth if read.bit_depth > 8 and read.channels == 3 else None
        run_id = make_run_id(name, ref.name, chash, sha, bit_depth=widened)
        plan.tasks.append(ImageTask(ref.name, Path(ref.path), (h, w), sha, run_id, boundary.frame((h, w), kernel),
                                    read.bit_depth))
    return plan

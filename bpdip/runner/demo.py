"""``python run.py experiment=demo``: LS-DIP and BP-DIP on one small image, side by side.

Each loss runs as an ordinary cell (records in ``<job dir>/<loss>/``, same schema as any
job); then the PSNRs are printed (per loss: the restored image and its stream, and each
output stream's best logged PSNR, bpdip.streams) and ``demo.png`` shows blurred | LS-DIP |
BP-DIP | ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from bpdip.metrics import psnr
from bpdip.runner.cell import degraded, run_cell
from bpdip.runner.plan import plan_cell

LABELS = {"ls": "LS-DIP", "ls_tv": "LS-TV-DIP", "bp": "BP-DIP", "bp_tv": "BP-TV-DIP"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    to = lambda v: torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1)  # noqa: E731
    return float(psnr(to(np.clip(a, 0, 1)), to(b)))


def loss_config(cfg: DictConfig, key: str) -> DictConfig:
    """The job config with ``loss`` replaced by ``demo.losses.<key>`` (interpolations such
    as the W&B run name then follow the loss)."""
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(sub):
        sub.loss = cfg.demo.losses[key]
        del sub["demo"]
    return sub


def run_demo(cfg: DictConfig, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    keys = list(cfg.demo.losses)
    plans = {k: plan_cell(loss_config(cfg, k)) for k in keys}  # check everything first
    summaries, finals = {}, {}
    for k in keys:
        summaries[k] = run_cell(None, out_dir / k, plan=plans[k])
    first = plans[keys[0]]
    lines = []
    for task in first.tasks:
        x, y = degraded(first, task)
        panels = [("blurred", y, _psnr(y, x))]
        for k in keys:
            restored = _read_png(out_dir / k / "restored" / f"{task.name}.png")
            entry = summaries[k]["images"][task.name]
            finals[(k, task.name)] = entry
            stream = f" ({entry['restored_stream']})" if entry.get("restored_stream") else ""
            panels.append((f"{LABELS.get(k, k)}{stream}, {entry['iterations']} it", restored, entry.get("final_psnr")))
        panels.append(("ground truth", x, None))
        fig_path = out_dir / (f"demo-{task.name}.png" if len(first.tasks) > 1 else "demo.png")
        side_by_side(panels, fig_path, f"{task.name} {task.shape[0]}x{task.shape[1]}, {first.cell['kernel']} "
                     f"blur, noise var {first.noise_var:g}")
        lines.append(f"demo: {task.name} ({task.shape[0]}x{task.shape[1]} crop), {first.cell['kernel']} blur, "
                     f"noise var {first.noise_var:g}")
        lines.append(f"  {'blurred input':<14} PSNR {panels[0][2]:6.2f} dB")
        for k in keys:
            e = finals[(k, task.name)]
            if e["status"] == "complete":
                lines.extend(result_lines(LABELS.get(k, k), e))
            else:
                lines.append(f"  {LABELS.get(k, k):<14} {e['status']}: {e.get('error')}")
        lines.append(f"  figure: {fig_path}")
    print("\n".join(lines), flush=True)
    return {"summaries": summaries, "report": "\n".join(lines)}


STREAM_WORDS = {"perturbed": "perturbed output f(z + noise), the paper's Table I stream",
                "clean": "clean output f(z), the paper's final image", "average": "averaged output (EMA)"}


def result_lines(label: str, e: dict) -> list[str]:
    """What a reader needs to follow one loss: the restored image's PSNR and which stream it
    is (output.restore), then each stream's best logged PSNR and where, so that a peak below
    the final number is no puzzle (the peak is of another stream)."""
    stream = e.get("restored_stream")
    what = f"the {STREAM_WORDS.get(stream, stream)}" if stream else "the final image"
    lines = [f"  {label:<14} PSNR {e['final_psnr']:6.2f} dB: restored image = {what} after {e['iterations']} "
             f"iterations, {e['runtime_s']:.0f} s"]
    streams = e.get("streams") or {"perturbed": {"peak_psnr": e.get("peak_psnr"),
                                                 "peak_iteration": e.get("peak_iteration")}}
    peaks = [f"{name} {v['peak_psnr']:.2f} dB at iteration {v['peak_iteration']}"
             for name, v in streams.items() if v.get("peak_psnr") is not None]
    if peaks:
        lines.append(f"  {'':<14} best logged PSNR per stream (ground truth): " + ", ".join(peaks))
    return lines


def _read_png(path: Path) -> np.ndarray | None:
    from bpdip.data import load_image  # the restored image is 16-bit

    return load_image(path) if path.is_file() else None


def side_by_side(panels, path: Path, title: str) -> None:
    """One row of images with their PSNRs, written as a PNG (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.9), squeeze=False)
    for ax, (label, img, value) in zip(axes[0], panels):
        if img is not None:
            ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "failed", ha="center", va="center")
        ax.set_title(label if value is None else f"{label}\n{value:.2f} dB")
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

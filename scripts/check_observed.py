"""Check a ``data=observed`` run against a truth image it never saw (issue 19, item 4).

The run itself knows no ground truth; this script does, for the shipped example
(``data/observed/chelsea_truth.png``, written by ``scripts/make_observation.py``). It
measures the blurred input, the restored image and every baseline of ``bpdip.baselines``
(Wiener's balance and Richardson-Lucy's count tuned with the truth, and the two that need
none) on y's frame with ``bpdip.metrics.quality``, and writes ``check.md`` (a table) and
``check.png`` (input | restored | tuned Wiener | truth) into the job directory.

    python scripts/check_observed.py results/observed --truth data/observed/chelsea_truth.png \\
        --kernel data/observed/gaussian_kernel.npy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpdip.baselines import LABELS, run_baselines  # noqa: E402
from bpdip.data import load_image  # noqa: E402
from bpdip.metrics import quality  # noqa: E402
from bpdip.physics import load_kernel  # noqa: E402


def measure(image: np.ndarray, truth: np.ndarray) -> dict:
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)[None]  # noqa: E731
    return {k: float(v[0]) for k, v in quality(t(np.clip(image, 0, 1)), t(truth)).items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", type=Path, help="the data=observed job directory (summary.json, restored/)")
    p.add_argument("--truth", type=Path, required=True)
    p.add_argument("--kernel", type=Path, required=True)
    p.add_argument("--observed", type=Path, help="y (default: the job's data.path)")
    args = p.parse_args(argv)
    summary = json.loads((args.job / "summary.json").read_text())
    [(name, entry)] = summary["images"].items()
    y_path = args.observed
    if y_path is None:  # the run's own data.path (config.yaml is the resolved config)
        import yaml

        path = yaml.safe_load((args.job / "config.yaml").read_text())["data"]["path"]
        y_path = Path(path[0] if isinstance(path, list) else path)
    y, truth = load_image(y_path), load_image(args.truth)
    restored = load_image(args.job / "restored" / f"{name}.png")
    kernel = load_kernel(args.kernel)
    records, images = run_baselines(y, kernel, truth)
    rows = [("blurred input y", measure(y, truth)),
            (f"BP-DIP restored ({entry.get('restored_stream', 'clean')} stream"
             + (f", {entry['restored_from']['rule']} @{entry['restored_from']['iteration']})"
                if entry.get("restored_from") else ")"), measure(restored, truth))]
    rows += [(LABELS.get(r["method"], r["method"]), {k: r[k] for k in ("psnr", "ssim", "ssim_dr2")})
             for r in records]
    lines = ["| image | PSNR [dB] | SSIM (data range 2) | SSIM (data range 1) |", "|---|---|---|---|"]
    lines += [f"| {label} | {m['psnr']:.2f} | {m['ssim_dr2']:.3f} | {m['ssim']:.3f} |" for label, m in rows]
    (args.job / "check.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("blurred input y", y, rows[0][1]), ("BP-DIP restored", restored, rows[1][1]),
              ("Wiener (tuned with truth)", images["wiener_oracle"],
               next(m for label, m in rows if label == LABELS["wiener_oracle"])), ("truth", truth, None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for ax, (title, img, m) in zip(axes, panels):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        ax.set_title(title + (f"\n{m['psnr']:.2f} dB / {m['ssim_dr2']:.3f}" if m else "\n(reference)"), fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.job / "check.png", dpi=130)
    plt.close(fig)
    print("\n".join(lines))
    return dict(rows)


if __name__ == "__main__":
    main()

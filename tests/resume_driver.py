"""A job in its own process for tests/test_resume_exact.py: ``python tests/resume_driver.py
OUT KILL_AT OVERRIDE...`` runs one cell (``bpdip.runner.run_cell``, as run.py does) into
OUT/job with the config composed from the overrides, appends every logged (image,
iteration) to OUT/trained.txt as it happens, and, if KILL_AT > 0, kills its own process
with SIGKILL right after the checkpoint of iteration KILL_AT is written: nothing of the
process runs after that (no finally, no atexit), as with a node that dies."""

import os
import signal
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's bpdip, as run.py next to it gets (not an installed one)

from bpdip.loop import Callback  # noqa: E402
from bpdip.runner import run_cell  # noqa: E402

CONF = ROOT / "conf"


class Spy(Callback):
    def __init__(self, out: Path, kill_at: int):
        self.log, self.kill_at = out / "trained.txt", kill_at

    def on_log(self, result, record):
        with self.log.open("a") as f:
            f.write(f"{result.name} {record['iteration']}\n")

    def on_checkpoint(self, iteration, path):
        if iteration == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    out, kill_at, overrides = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    run_cell(cfg, out / "job", callbacks=[Spy(out, kill_at)])

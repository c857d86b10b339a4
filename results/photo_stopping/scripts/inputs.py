import glob, os, sys, yaml, json
sys.path.insert(0, "/work/wt/stopping")
import numpy as np
from omegaconf import OmegaConf
from bpdip.runner import plan_cell
from bpdip.runner.cell import degraded
from bpdip.physics.valid import crop_hw
from bpdip.baselines import measure
out = {}
for cfgp in sorted(glob.glob("/tmp/stopm/jobs/*/config.yaml")):
    name = os.path.basename(os.path.dirname(cfgp))
    cfg = OmegaConf.load(cfgp)
    plan = plan_cell(cfg)
    t = plan.tasks[0]
    x, y = degraded(plan, t)
    x = crop_hw(x, t.frame)
    out[name] = measure(np.clip(y, 0, 1), x)["psnr"]
    print(name, round(out[name], 2))
json.dump(out, open("/tmp/stopm/inputs.json", "w"))

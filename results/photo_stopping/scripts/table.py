import json, glob, os
inp = json.load(open("/tmp/stopm/inputs.json"))
print("| run | input | best oracle (stream@it) | average, last | **average, ES-EMV** | average, ES-WMV | average, bp_discrepancy | perturbed, ES-WMV | perturbed, bp_discrepancy |")
print("|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob("/tmp/stopm/jobs/*/summary.json")):
    name = os.path.basename(os.path.dirname(path))
    s = json.load(open(path)); e = list(s["images"].values())[0]
    if "choices" not in e: continue
    ch = e["choices"]
    best = max(((c[r]["psnr"], st, c[r]["iteration"]) for st, c in ch.items() for r in ("oracle", "fixed")))
    f = lambda st, r: f"{ch[st][r]['psnr']:.2f} @{ch[st][r]['iteration']}"
    print(f"| {name} | {inp.get(name, float('nan')):.2f} | {best[0]:.2f} ({best[1]}@{best[2]}) | {f('average','fixed')} | **{f('average','emv')}** | {f('average','wmv')} | {f('average','bp_discrepancy')} | {f('perturbed','wmv')} | {f('perturbed','bp_discrepancy')} |")

"""nexus-bench with Inductor options from IND ("a.b=1;c=0") and POW2=1 for power-of-2 FP8 scales: how the
options in inductor/ were measured at commit e24c3a8, before model.llama.INDUCTOR_OPTIONS existed (on later
commits, nexus-bench --inductor-defaults measures the other side).

    IND="triton.prefer_nd_tiling=1;triton.tile_reductions=1" python3 set_inductor_options.py --compile ...
"""
import dataclasses, os, runpy, sys
import torch._inductor.config as ic
for item in filter(None, os.environ.get("IND", "").split(";")):
    key, value = item.split("=")
    obj = ic
    *path, last = key.split(".")
    for p in path:
        obj = getattr(obj, p)
    setattr(obj, last, int(value) if value.isdigit() else value)
    print("inductor", key, "=", getattr(obj, last))
if os.environ.get("POW2") == "1":
    from nexus_pretrain.model import float8
    orig = float8.float8_config
    float8.float8_config = lambda *a, **k: dataclasses.replace(orig(*a, **k), round_scales_to_power_of_2=True)
    print("pow2 scales")
sys.argv = ["nexus-bench"] + sys.argv[1:]
runpy.run_module("nexus_pretrain.bench", run_name="__main__")

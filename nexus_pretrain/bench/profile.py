"""Where a training step's device time goes: torch.profiler kernel times grouped into categories."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from torch.profiler import ProfilerActivity, profile

from nexus_pretrain.console import show

# First match wins; patterns are matched against kernel names (lower-cased).
CATEGORIES: List[Tuple[str, str]] = [
    ("attention", r"flash|fmha|attention|sdpa|cudnn"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|cublas|sm90_|sm80_|wgmma|matmul|\bmm\b"),
    ("optimizer", r"adam|multi_tensor|foreach|_amp_|lerp"),
    ("loss", r"nll|log_softmax|cross_entropy|logsumexp"),
    # FP8 training's scales (abs-max reductions) and casts (scale, clamp to the format's range), with any
    # elementwise work Inductor fused into them.
    ("fp8 scaling and casts (compiled)", r"^triton_.*(abs_max|amax|clamp)"),
    ("fused elementwise (compiled)", r"^triton_"),
    ("copy/cast", r"memcpy|memset|copy|to_copy|cast|fill"),
    ("norm", r"norm"),
    ("elementwise (eager)", r"elementwise|vectorized|unrolled|reduce_kernel|index|embedding"),
]


def categorize(kernel: str) -> str:
    """The category of a kernel name (``other`` when no pattern matches)."""
    name = kernel.lower()
    return next((cat for cat, pattern in CATEGORIES if re.search(pattern, name)), "other")


def device_time_by_category(kernels: Dict[str, float]) -> Dict[str, float]:
    """Sum kernel times (any unit) per category, largest first."""
    totals: Dict[str, float] = {}
    for name, t in kernels.items():
        cat = categorize(name)
        totals[cat] = totals.get(cat, 0.0) + t
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def profile_step(step: Callable[[], None], out_dir: Path, label: str) -> Dict[str, float]:
    """Run ``step`` once under the torch profiler; write the category breakdown and the top kernels
    to ``out_dir/label.txt``; return milliseconds per category plus ``wall`` (the step's
    wall time) and ``device`` (summed kernel time)."""

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
    wall_ms = start.elapsed_time(end)
    kernels: Dict[str, float] = {}
    for event in prof.events():
        # GPU user annotations (e.g. "Optimizer.step#AdamW.step") span kernels already counted.
        if event.device_type == torch.autograd.DeviceType.CUDA and not event.is_user_annotation:
            kernels[event.name] = kernels.get(event.name, 0.0) + event.time_range.elapsed_us() / 1000.0
    by_cat = device_time_by_category(kernels)
    device_ms = sum(kernels.values())
    lines = [f"{label}: step wall {wall_ms:.1f} ms, kernels {device_ms:.1f} ms "
             f"(kernels on several streams may overlap)", f"{'category':<30} {'ms':>9} {'% of wall':>10}"]
    lines += [f"{cat:<30} {ms:>9.1f} {ms / wall_ms:>10.1%}" for cat, ms in by_cat.items()]
    lines += ["", "top kernels:"]
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:40]
    lines += [f"{ms:>9.2f} ms  {categorize(name):<12} {name[:150]}" for name, ms in top]
    (out_dir / f"{label}.txt").write_text("\n".join(lines) + "\n")
    show("\n".join(lines[: 3 + len(by_cat)]))
    return {**by_cat, "wall": wall_ms, "device": device_ms}

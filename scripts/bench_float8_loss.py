"""The same-loss check of FP8 training: two nexus-train runs with the same seed and batches, one in bf16 and
one with model.float8=true (scripts/gpu_float8.sh 3b_loss), compared. Prints the final training loss
(mean of the last --window logged values) and the final held-out loss of each, their relative
difference, and plots both training-loss curves with the numbers in the legend.

    python scripts/bench_float8_loss.py BF16_metrics.jsonl FP8_metrics.jsonl --plot loss.png [--json-out loss.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional


def read(path: Path) -> List[dict]:
    """The records of a metrics.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(records: List[dict], window: int) -> Dict[str, float]:
    """Last step, mean training loss of the last ``window`` logged values, last held-out loss."""
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "val/pretrain" in r]
    out = {"steps": train[-1]["step"], "final_loss": sum(r["loss"] for r in train[-window:]) / min(window, len(train))}
    if evals:
        out["final_val_pretrain"] = evals[-1]["val/pretrain"]
        out["val_step"] = evals[-1]["step"]
    return out


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    """Compare the two runs; write the plot (and JSON) if asked."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bf16", type=Path)
    p.add_argument("fp8", type=Path)
    p.add_argument("--window", type=int, default=4, help="logged training losses averaged for the final value")
    p.add_argument("--plot", type=Path)
    p.add_argument("--title", default="llama_520m, 500 steps of 32 x 512 tokens, AdamW, seed 0")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    runs = {"bf16": read(args.bf16), "fp8": read(args.fp8)}
    result = {name: summary(records, args.window) for name, records in runs.items()}
    b, f = result["bf16"], result["fp8"]
    result["relative_difference"] = {key: (f[key] - b[key]) / b[key] for key in ("final_loss", "final_val_pretrain")
                                     if key in b and key in f}
    for name in ("bf16", "fp8"):
        print(f"{name:<5} " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result[name].items()))
    print("FP8 vs bf16, relative: " + "  ".join(f"{k} {v:+.3%}" for k, v in result["relative_difference"].items()))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, records in runs.items():
            train = [r for r in records if "loss" in r]
            label = f"{name}: final {result[name]['final_loss']:.4f}"
            if "final_val_pretrain" in result[name]:
                label += f", held-out {result[name]['final_val_pretrain']:.4f}"
            ax.plot([r["step"] for r in train], [r["loss"] for r in train], label=label, linewidth=1.2)
        diff = result["relative_difference"]
        ax.set_title(f"{args.title}\nFP8/bf16 - 1: final loss {diff['final_loss']:+.2%}" +
                     (f", held-out {diff['final_val_pretrain']:+.2%}" if "final_val_pretrain" in diff else ""),
                     fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

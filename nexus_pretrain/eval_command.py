"""nexus-eval's command line. It sits above train as well as evaluation: --checkpoint exports a training
checkpoint (train.export) before evaluating it, and train imports evaluation for in-training evaluation."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from nexus_pretrain.console import show
from nexus_pretrain.evaluation.benchmarks import BENCHMARKS, select
from nexus_pretrain.evaluation.heldout import heldout_losses
from nexus_pretrain.evaluation.results import write_results
from nexus_pretrain.evaluation.sandbox import (CODE_BENCHMARKS, SandboxUnavailable, isolation, permit_unisolated,
                                               require_isolation)
from nexus_pretrain.evaluation.stage import EvalSettings, evaluate_checkpoint, resolve_dirs
from nexus_pretrain.train.checkpoint import read_meta
from nexus_pretrain.train.export import export_checkpoint

log = logging.getLogger(__name__)

# Hydra-style overrides accepted as well as flags: nexus-eval run_dir=runs/x eval.tasks=mmlu,gsm8k
_OVERRIDES = {"run_dir": None, "eval.tasks": "--tasks", "eval.data_dir": "--data-dir", "eval.limit": "--limit",
              "eval.out": "--out", "eval.batch_size": "--batch-size", "eval.device": "--device",
              "eval.max_gen_toks": "--max-gen-toks", "eval.step": "--step", "eval.model_dir": "--model-dir",
              "eval.checkpoint": "--checkpoint",
              "eval.tag": "--tag"}


def translate_overrides(argv: List[str]) -> List[str]:
    """Rewrite ``key=value`` overrides into the equivalent flags (``run_dir=X`` becomes the positional X)."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and key in _OVERRIDES:
            out += [value] if _OVERRIDES[key] is None else [_OVERRIDES[key], value]
        elif eq and not arg.startswith("-") and key.startswith("eval."):
            raise ValueError(f"{key}: no such nexus-eval setting; use one of {', '.join(_OVERRIDES)}")
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-eval",
        description="Evaluate a checkpoint: held-out pretrain/OOD loss, lm-eval accuracies on the paper's "
                    "benchmarks and downstream (gold-answer) losses, written to one results JSON. With a bare "
                    "model directory and no --tasks/--data-dir, prints its held-out losses on the embedded corpus.")
    parser.add_argument("path", type=Path, help="run directory (config.yaml, metrics.jsonl, hf/) or a Hugging Face "
                                                "model directory (config.json)")
    parser.add_argument("--tasks", default=None,
                        help=f"comma-separated benchmarks (default: all): {','.join(BENCHMARKS)}")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="benchmark data directory (default: $NEXUS_EVAL_DATA or data/benchmarks)")
    parser.add_argument("--limit", type=int, default=None, help="at most N examples per task (BBH: per subtask)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default: RUN_DIR/eval/results_step<step>.json, or MODEL_DIR/results.json)")
    parser.add_argument("--model-dir", type=Path, default=None, help="model to evaluate instead of RUN_DIR/hf")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="evaluate this training checkpoint (RUN_DIR/checkpoints/step_XXXXXXXX) instead of "
                             "RUN_DIR/hf: exported to a temporary HF directory, its step read from it "
                             "(for Fig. 7a over checkpoints)")
    parser.add_argument("--step", type=int, default=None,
                        help="training step the model is from (default: the run's last logged step)")
    parser.add_argument("--tag", default=None, help="label stored in the results JSON for table layouts to match "
                                                   "(e.g. chinchilla4, public, pre_sft; see eval/tables/README.md)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-gen-toks", type=int, default=None, help="cap on generated tokens (smoke tests)")
    parser.add_argument("--no-harness", action="store_true", help="skip lm-eval accuracies")
    parser.add_argument("--no-downstream-loss", action="store_true", help="skip gold-answer losses")
    parser.add_argument("--no-heldout", action="store_true", help="skip pretrain/OOD held-out losses")
    parser.add_argument("--allow-unisolated-code", action="store_true",
                        help="run HumanEval/MBPP's generated code even where the sandbox cannot isolate it (no user "
                             "namespaces); refused otherwise. Recorded in the results JSON "
                             "(sandbox.unisolated_allowed)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="held-out window length (bare model directory only; default 128 or the model's "
                             "context, whichever is shorter)")
    parser.add_argument("--sequences", type=int, default=32,
                        help="held-out windows per domain (bare model directory only)")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Parse the command line, evaluate and write the results JSON."""
    parser = build_parser()
    try:
        args = parser.parse_args(translate_overrides(list(sys.argv[1:] if argv is None else argv)))
    except ValueError as e:
        parser.error(str(e))

    try:
        run_dir, model_dir = resolve_dirs(args.path)
    except FileNotFoundError as e:
        parser.error(str(e))
    if run_dir is None and args.tasks is None and args.data_dir is None:
        try:
            losses = heldout_losses(model_dir, args.seq_len, args.sequences)
        except ValueError as e:
            parser.error(str(e))
        for name, value in losses.items():
            show(f"{name:<16} {value:.4f}")
        return
    settings = EvalSettings(
        tasks=[t for t in (args.tasks or "").split(",") if t],
        data_dir=args.data_dir or Path(os.environ.get("NEXUS_EVAL_DATA", "data/benchmarks")),
        limit=args.limit, batch_size=args.batch_size, device=args.device, max_gen_toks=args.max_gen_toks,
        harness=not args.no_harness, downstream_loss=not args.no_downstream_loss, heldout=not args.no_heldout)
    try:
        _check_sandbox(settings, args.allow_unisolated_code)
        if args.checkpoint is not None:
            results = _evaluate_training_checkpoint(args, settings)
        else:
            results = evaluate_checkpoint(args.path, settings, step=args.step, model_dir=args.model_dir, tag=args.tag)
    except (FileNotFoundError, ValueError, ConnectionError, SandboxUnavailable) as e:
        sys.exit(f"nexus-eval: {e}")

    out = args.out or (run_dir / "eval" / f"results_step{results['step']}.json" if run_dir
                       else model_dir / "results.json")
    write_results(results, out)
    m = results["metrics"]
    show(json.dumps({"pretrain": m["pretrain"], "ood": m["ood"], "accuracy": m["accuracy"], "loss": m["loss"]},
                     indent=1))
    show(f"wrote {out}")


def _check_sandbox(settings, allow_unisolated: bool) -> None:
    """Before anything is loaded: refuse (SandboxUnavailable) to score generated code without isolation unless
    allowed, and say so on stderr when it is allowed and needed."""

    permit_unisolated(allow_unisolated)
    if not settings.harness or not CODE_BENCHMARKS & {b.name for b in select(settings.tasks)}:
        return
    require_isolation()
    info = isolation()
    if not info["isolated"]:
        log.warning(f"nexus-eval: WARNING: generated code runs WITHOUT isolation ({'; '.join(info['missing'])}), as "
                    "--allow-unisolated-code asked; the results JSON records it")


def _evaluate_training_checkpoint(args: argparse.Namespace, settings) -> dict:
    """evaluate_checkpoint on a training checkpoint, exported with nexus-export's export_checkpoint."""
    step = read_meta(args.checkpoint)["step"]
    with tempfile.TemporaryDirectory(prefix="nexus_eval_hf_") as tmp:
        model_dir = export_checkpoint(args.checkpoint, Path(tmp) / "hf")
        results = evaluate_checkpoint(args.path, settings, step=step, model_dir=model_dir, tag=args.tag)
    results["model_dir"] = None
    results["checkpoint"] = str(Path(args.checkpoint).resolve())
    return results

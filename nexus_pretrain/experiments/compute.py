"""H100-hours of the paper-scale runs of the paper's tables, from the throughput that nexus-bench measured.

The measurements live in throughput.json next to this module, each with the commit, GPU, torch version
and command that produced it (docs/performance.md, "What the estimates use", shows them as a table).
Assumptions: each run on one H100-equivalent at the MFU of H100_BENCH (one H100 80GB, bf16, per-block
compile, vocabulary 32000); evaluation and checkpoints not counted. A preset or sequence length that was
not measured gets the MFU measured on the preset nearest in N (the parameters of 6N), converted to
tokens/s with its own FLOPs per token; an optimizer not measured there gets AdamW's MFU there divided by
its slowdown against AdamW on the nearest preset where both were measured. A run that several tables
share (one run directory) counts once.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.experiments.registry import table_spec
from nexus_pretrain.experiments.runner import PlannedRun, plan_runs
from nexus_pretrain.model.llama import flops_per_token as model_flops
from nexus_pretrain.model.presets import mfu_parameters, resolve_model_args
from nexus_pretrain.train.metrics import PEAK_BF16_FLOPS

H100_PEAK_FLOPS = PEAK_BF16_FLOPS["H100"]  # the peak of nexus-bench's MFU
BENCH_VOCAB = 32000  # vocabulary of the measurements and of the paper-scale runs (Llama-2 tokenizer)


@dataclass(frozen=True)
class Measurement:
    """One row of nexus-bench on one H100: an optimizer's tokens/s on a preset at a sequence length."""

    preset: str
    optimizer: str  # adamw, muon, nexus(adamw) or nexus(muon)
    seq_len: int
    tokens_per_s: float
    micro_batch: int = 0
    commit: str = ""  # the code measured
    file: str = ""  # nexus-bench's full output, under results/


def load_bench(path: Path | None = None) -> Tuple[Measurement, ...]:
    """The measurements of a throughput file (default: the package's throughput.json), each with the
    commit of the run that made it."""
    source = Path(path) if path else resources.files("nexus_pretrain.experiments") / "throughput.json"
    data = json.loads(source.read_text())
    if data["vocab_size"] != BENCH_VOCAB:
        raise ValueError(f"{source}: measured at vocabulary {data['vocab_size']}, the estimates assume {BENCH_VOCAB}")
    return tuple(Measurement(m["preset"], m["optimizer"], m["seq_len"], m["tokens_per_s"], m["micro_batch"],
                             run["commit"], m["file"])
                 for run in data["runs"] for m in run["measurements"])


H100_BENCH: Tuple[Measurement, ...] = load_bench()


def _shape(model_cfg, seq_len: int):
    """(ModelArgs, N) of a model config with the benchmarks' vocabulary, N as nexus-bench counts it."""
    args = resolve_model_args(model_cfg, BENCH_VOCAB, seq_len)
    return args, mfu_parameters(args)


def n_params(model_cfg) -> int:
    """N of a model config as nexus-bench counts it (vocabulary 32000; the output head counts, the input
    embedding does not)."""
    return _shape(model_cfg, 2048)[1]


def flops_per_token(model_cfg, seq_len: int) -> float:
    """Training FLOPs per token as nexus-bench's MFU counts them: 6N + 12 x layers x dim x seq_len."""
    args, n = _shape(model_cfg, seq_len)
    return model_flops(args, seq_len, n)


def _preset(name: str):
    return ModelConfig(preset=name)


def measured_mfu(m: Measurement) -> float:
    """The MFU of a measurement (tokens/s x FLOPs per token / 989 TFLOP/s)."""
    return m.tokens_per_s * flops_per_token(_preset(m.preset), m.seq_len) / H100_PEAK_FLOPS


def bench_markdown(bench: Sequence[Measurement] = H100_BENCH) -> str:
    """The measurements as the Markdown table of docs/performance.md: preset, optimizer, micro-batch,
    tokens/s, MFU, the commit measured and nexus-bench's output file."""
    header = ["preset", "optimizer", "micro-batch", "tokens/s", "MFU", "commit", "output"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in bench:
        lines.append(f"| `{m.preset}` | {m.optimizer} | {m.micro_batch} | {m.tokens_per_s:,.0f} | "
                     f"{100 * measured_mfu(m):.1f}% | {m.commit} | `{m.file}` |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Throughput:
    """Estimated H100 tokens/s of a run, its MFU and which measurement the MFU comes from."""

    tokens_per_s: float
    mfu: float
    source: str


def throughput(model_cfg, optimizer: str, seq_len: int,
               bench: Sequence[Measurement] = H100_BENCH) -> Throughput:
    """The H100 tokens/s of a model config and optimizer at a sequence length (rules: module docstring)."""
    by_preset: Dict[str, Dict[str, Measurement]] = {}
    for m in bench:
        by_preset.setdefault(m.preset, {})[m.optimizer] = m
    n = n_params(model_cfg)

    def nearest(presets):
        return min(presets, key=lambda p: abs(math.log(n_params(_preset(p)) / n)))

    here_name = nearest(by_preset)
    here = by_preset[here_name]
    if optimizer in here:
        mfu, source = measured_mfu(here[optimizer]), f"{optimizer} on {here_name}"
    else:
        both = [p for p, ms in by_preset.items() if optimizer in ms and "adamw" in ms]
        if not both or "adamw" not in here:
            raise ValueError(f"no H100 measurement to estimate {optimizer} on {model_cfg.preset} from")
        ref_name = nearest(both)
        ref = by_preset[ref_name]
        slowdown = ref["adamw"].tokens_per_s / ref[optimizer].tokens_per_s
        mfu = measured_mfu(here["adamw"]) / slowdown
        source = f"adamw on {here_name} ÷ {slowdown:.3f}, {optimizer}'s slowdown on {ref_name}"
    return Throughput(mfu * H100_PEAK_FLOPS / flops_per_token(model_cfg, seq_len), mfu, source)


def optimizer_label(optim_cfg) -> str:
    """adamw, muon, nexus(adamw) or nexus(muon): how H100_BENCH names a run's optimizer."""
    return optim_cfg.name if optim_cfg.name != "nexus" else f"{optim_cfg.variant}({optim_cfg.outer})"


@dataclass(frozen=True)
class RunCost:
    """One training run: what it is, which rows (or tables) need it, its tokens and estimated H100-hours."""

    run_dir: str
    run: str  # experiment and sweep point, e.g. "main_3b optim=adamw"
    used_by: Tuple[str, ...]
    preset: str
    optimizer: str
    steps: int
    tokens: int
    throughput: Throughput

    @property
    def gpu_hours(self) -> float:
        return self.tokens / self.throughput.tokens_per_s / 3600


def run_costs(runs: Sequence[PlannedRun]) -> List[RunCost]:
    """Every training run behind a table's planned runs, once (a fine-tuning row's base included; a row that
    only scores its base trains nothing), with its H100-hours."""
    needed: Dict[str, Tuple[PlannedRun, List[str]]] = {}
    for run in runs:
        label = f"{run.row.group}/{run.row.row}" if run.row.group else run.row.row
        trained = ([run.base] if run.base is not None else []) + ([] if run.row.evaluate_only else [run])
        for r in trained:
            needed.setdefault(str(r.run_dir), (r, []))[1].append(label)
    costs = []
    for run_dir, (run, labels) in needed.items():
        cfg = run.config
        optimizer = optimizer_label(cfg.optim)
        steps = cfg.trainer.max_steps
        costs.append(RunCost(run_dir, " ".join([run.row.experiment, *run.row.overrides]),
                             tuple(dict.fromkeys(labels)), cfg.model.preset, optimizer, steps,
                             steps * cfg.trainer.global_batch * cfg.data.seq_len,
                             throughput(cfg.model, optimizer, cfg.data.seq_len)))
    return costs


def table_costs(names: Sequence[str], seeds: Sequence[int] = (0,), extra_overrides: Sequence[str] = (),
                run_root: Path = Path("runs/reproduce")) -> Dict[str, List[RunCost]]:
    """{table: its paper-scale training runs with their H100-hours} for registry table names."""
    return {name: run_costs(plan_runs(table_spec(name), "paper", seeds, run_root, extra_overrides))
            for name in names}


def _hours(h: float) -> str:
    return f"{h:,.0f}"


def runs_markdown(costs: Sequence[RunCost]) -> str:
    """One row per run (who needs it, preset, optimizer, steps, tokens, MFU and its source, tokens/s,
    H100-hours) and the total."""
    header = ["run", "needed by", "preset", "optimizer", "steps", "tokens", "MFU (from)", "tokens/s", "H100-hours"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in costs:
        t = c.throughput
        lines.append(f"| {c.run} | {', '.join(c.used_by)} | `{c.preset}` | {c.optimizer} | {c.steps:,} | "
                     f"{c.tokens / 1e9:,.1f}B | {100 * t.mfu:.1f}% ({t.source}) | {t.tokens_per_s:,.0f} | "
                     f"{_hours(c.gpu_hours)} |")
    total = sum(c.gpu_hours for c in costs)
    lines.append(f"| total | | | | | {sum(c.tokens for c in costs) / 1e9:,.1f}B | | | {_hours(total)} |")
    return "\n".join(lines) + "\n"


def tables_markdown(by_table: Mapping[str, Sequence[RunCost]]) -> str:
    """Per table: its runs and H100-hours on its own, then the runs and H100-hours it adds to the tables
    above it (shared runs count once); the last row is the total of all of them."""
    header = ["table", "runs", "H100-hours (alone)", "new runs", "H100-hours added"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seen: Dict[str, RunCost] = {}
    for name, costs in by_table.items():
        new = [c for c in costs if c.run_dir not in seen]
        seen.update((c.run_dir, c) for c in new)
        lines.append(f"| {name} | {len(costs)} | {_hours(sum(c.gpu_hours for c in costs))} | {len(new)} | "
                     f"{_hours(sum(c.gpu_hours for c in new))} |")
    total = _hours(sum(c.gpu_hours for c in seen.values()))
    lines.append(f"| all (shared runs once) | {len(seen)} | {total} | {len(seen)} | {total} |")
    return "\n".join(lines) + "\n"


def distinct_runs(by_table: Mapping[str, Sequence[RunCost]]) -> List[RunCost]:
    """Each run of the tables once, ``used_by`` naming the tables that need it."""
    merged: Dict[str, RunCost] = {}
    for name, costs in by_table.items():
        for c in costs:
            prev = merged.get(c.run_dir, dataclasses.replace(c, used_by=()))
            merged[c.run_dir] = dataclasses.replace(prev, used_by=prev.used_by + (name,))
    return list(merged.values())

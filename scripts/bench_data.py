"""Data-pipeline benchmark (not a test): prints, in one run,

(a) tokenization throughput of `nexus-data prepare` on the embedded recipes, once per --encoders value (hf:
    the tokenizer's Rust encoder; tiktoken: the same BPE in tiktoken) and --prepare-workers value
    (1: one process, the encoder's threads on every core; 2: two processes of cores/2 threads each): the
    rate prepare reports (tokenizing and writing, after start-up) and the end-to-end rate of the whole
    command (interpreter start, imports and worker start-up included), and
(b) loader throughput for the 130M preset's batch shape (seq_len 1024, micro-batch 16, accumulation 4,
    data.source=shards over the shards of (a)) against the trainer's consumption for that preset;
(c) with --cache-capacity N: the Rust encoder alone on the embedded documents (prepare's batches, a fresh
    tokenizer per run), its BPE word cache at the default size vs N words, runs interleaved; ids compared.

    python scripts/bench_data.py [--steps 50] [--workers 2] [--prepare-workers 1,2] [--encoders hf,tiktoken]
        [--repeat 1] [--cache-capacity N]

The load average is printed with each part: the machine may be shared, and rates scale with free cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nexus_pretrain.data import prepare, store
from nexus_pretrain.data.loader import MicroBatchLoader
from nexus_pretrain.data.sampler import MixtureSampler

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "data_pipelines" / "recipes").glob("embedded_*.yaml"))
# Trainer consumption measured on one H100 for the 130M preset with AdamW, micro-batch 16 x 1024 tokens,
# accumulation 4 (scripts/bench_inner_step.py setting): tokens per second the loader must keep up with.
TRAINER_TOKENS_PER_S_H100_130M = 292_513
SEQ_LEN, MICRO_BATCH, ACCUMULATION = 1024, 16, 4


def bench_prepare(out: Path, workers: int, verbose: bool = True, encoder: str = "hf") -> tuple[float, float]:
    """Run `nexus-data prepare` on the embedded recipes into ``out`` (which must not exist); return its
    reported total tokens/s and the end-to-end tokens/s of the command."""
    command = [sys.executable, "-c", "from nexus_pretrain.cli import data; data()", "prepare",
               *map(str, RECIPES), "--out", str(out), "--workers", str(workers), "--no-progress",
               "--encoder", encoder]
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if verbose:
        print(result.stdout.rstrip())
    total = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    tokens = int(total.split()[1])
    return float(total.split("(")[1].split()[0].replace(",", "")), tokens / wall


def bench_loader(root: Path, steps: int, num_workers: int) -> float:
    """Tokens/s of the trainer's micro-batch loader over ``steps`` optimizer steps of the shards under ``root``."""
    domains = ["web", "math", "code"]
    streams = {d: store.open_stream(root, d, "train") for d in domains}
    sampler = MixtureSampler(streams, {d: 1.0 for d in domains}, SEQ_LEN, seed=0)
    loader = MicroBatchLoader(sampler, ACCUMULATION, MICRO_BATCH, rank=0, world_size=1, stop_step=steps + 1,
                              num_workers=num_workers)
    try:
        loader.get(0, 0)  # start the workers outside the timed part
        for micro in range(1, ACCUMULATION):
            loader.get(0, micro)
        start = time.perf_counter()
        for step in range(1, steps + 1):
            for micro in range(ACCUMULATION):
                batch = loader.get(step, micro)
                assert batch.inputs.shape == (MICRO_BATCH, SEQ_LEN)
        seconds = time.perf_counter() - start
    finally:
        loader.close()
    return steps * ACCUMULATION * MICRO_BATCH * SEQ_LEN / seconds


def bench_cache(capacity: int, repeat: int) -> None:
    """Print encoder tokens/s with the BPE cache at its default size and at ``capacity`` words, interleaved."""
    from tokenizers import Tokenizer

    from nexus_pretrain.data.recipe import iter_documents, load_recipe
    from nexus_pretrain.data.tokens import backend_tokenizer

    tokenizer_json = backend_tokenizer(prepare.load_tokenizer(None)[0]).to_str()
    batches = [b for r in RECIPES for b in prepare._batches(iter_documents(load_recipe(r)), 0)]
    rates: dict[str, list[float]] = {"default": [], f"{capacity:,}": []}
    ids: dict[str, list[list[int]]] = {}
    for run in range(repeat):
        for name in (list(rates) if run % 2 == 0 else list(rates)[::-1]):
            tokenizer = Tokenizer.from_str(tokenizer_json)
            if name != "default":
                tokenizer.model._resize_cache(capacity)  # not serialised in tokenizer.json: set on the model
            start, out = time.perf_counter(), []
            for batch in batches:
                out += [e.ids for e in tokenizer.encode_batch_fast(batch, add_special_tokens=False)]
            rates[name].append(sum(map(len, out)) / (time.perf_counter() - start))
            ids.setdefault(name, out)
    base = statistics.median(rates["default"])
    for name, values in rates.items():
        print(f"    cache {name:>9}: {max(values):,.0f} tokens/s best, {statistics.median(values):,.0f} median of "
              f"{len(values)} ({statistics.median(values) / base:.2f}x default median)")
    print(f"    ids identical: {ids['default'] == ids[f'{capacity:,}']}")


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {prepare.cpu_cores()} cores"


def main() -> None:
    """Run the measurements and print them with the loader/trainer ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps the loader produces")
    parser.add_argument("--workers", type=int, default=2, help="loader workers")
    parser.add_argument("--prepare-workers", default="1,2", help="comma-separated --workers values for prepare")
    parser.add_argument("--repeat", type=int, default=1, help="prepare runs per setting (best and median shown)")
    parser.add_argument("--encoders", default="hf,tiktoken", help="comma-separated prepare --encoder values")
    parser.add_argument("--cache-capacity", type=int, default=0,
                        help="also compare the encoder with its BPE cache at this many words (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "shards"
        settings = [(e, int(w)) for e in args.encoders.split(",") for w in args.prepare_workers.split(",")]
        for encoder, workers in settings:
            print(f"(a) nexus-data prepare {len(RECIPES)} embedded recipes, --encoder {encoder} --workers {workers} "
                  f"({load()})")
            rates, walls = [], []
            for run in range(args.repeat):
                target = out if not out.exists() else Path(tmp) / f"prepare_{encoder}_{workers}_{run}"
                rate, wall = bench_prepare(target, workers, verbose=run == 0, encoder=encoder)
                rates.append(rate)
                walls.append(wall)
            print(f"    tokenization: {max(rates):,.0f} tokens/s best, {statistics.median(rates):,.0f} median of "
                  f"{len(rates)} (goal >= 1,000,000); whole command incl. start-up: {max(walls):,.0f} best, "
                  f"{statistics.median(walls):,.0f} median")
        print(f"(b) loader, seq_len {SEQ_LEN}, micro-batch {MICRO_BATCH}, accumulation {ACCUMULATION}, "
              f"{args.steps} steps, data.source=shards")
        for workers in sorted({0, args.workers}):
            rate = bench_loader(out, args.steps, workers)
            print(f"    num_workers={workers}: {rate:,.0f} tokens/s = {rate / TRAINER_TOKENS_PER_S_H100_130M:.1f}x "
                  f"the trainer's {TRAINER_TOKENS_PER_S_H100_130M:,} tokens/s (130M AdamW, H100; goal >= 10x)")
    if args.cache_capacity:
        print(f"(c) encoder alone, BPE cache default vs {args.cache_capacity:,} words, {args.repeat} runs each, "
              f"interleaved ({load()})")
        bench_cache(args.cache_capacity, args.repeat)


if __name__ == "__main__":
    main()

"""nexus_pretrain.experiments.compute: MFU of the README's H100 measurements, the throughput rules for
unmeasured presets and optimizers, and H100-hours per table with shared runs counted once."""

import importlib.util
import json

import pytest

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.experiments import compute
from nexus_pretrain.paths import REPO_ROOT

FLOPS_1B = 6 * 1_279_887_360 + 12 * 24 * 2048 * 2048      # llama_1b, vocabulary 32000, seq len 2048
FLOPS_3B = 6 * 2_421_731_840 + 12 * 34 * 2560 * 2048      # llama_3b
FLOPS_130M = 6 * 152_006_400 + 12 * 18 * 768 * 1024        # llama_130m at seq len 1024
FLOPS_130M_2048 = 6 * 152_006_400 + 12 * 18 * 768 * 2048   # and at its measured 2048


def test_flops_per_token_is_6n_plus_attention():
    assert compute.flops_per_token(ModelConfig(preset="llama_1b"), 2048) == FLOPS_1B
    assert compute.flops_per_token(ModelConfig(preset="llama_3b"), 2048) == FLOPS_3B
    assert compute.flops_per_token(ModelConfig(preset="llama_130m"), 1024) == FLOPS_130M


def test_measured_mfu_is_the_readme_column():
    mfu = {(m.preset, m.optimizer): round(100 * compute.measured_mfu(m), 1) for m in compute.H100_BENCH}
    assert mfu == {("llama_130m", "adamw"): 46.7, ("llama_130m", "nexus(adamw)"): 46.2,
                   ("llama_130m", "muon"): 44.6, ("llama_130m", "nexus(muon)"): 42.9,
                   ("llama_520m", "adamw"): 51.5,
                   ("llama_1b", "adamw"): 58.5, ("llama_1b", "nexus(adamw)"): 58.6,
                   ("llama_1b", "muon"): 57.2, ("llama_1b", "nexus(muon)"): 57.0,
                   ("llama_3b", "adamw"): 53.6, ("llama_3b", "nexus(adamw)"): 52.9}


def test_throughput_rules():
    measured = compute.throughput(ModelConfig(preset="llama_1b"), "nexus(adamw)", 2048)
    assert measured.tokens_per_s == pytest.approx(65_198) and measured.source == "nexus(adamw) on llama_1b"
    # an unmeasured shape takes the MFU of the measured preset nearest in log N, at its own FLOPs per token:
    # llama_1b with 28 layers (1.48B) is nearer to llama_1b (1.28B) than to llama_3b (2.42B)
    deeper = compute.throughput(ModelConfig(preset="llama_1b", n_layers=28), "adamw", 2048)
    assert deeper.source == "adamw on llama_1b"
    assert deeper.tokens_per_s == pytest.approx(
        65_133 * FLOPS_1B / (6 * (1_279_887_360 + 4 * 50_597_888) + 12 * 28 * 2048 * 2048))
    # the same MFU at another sequence length: tokens/s scale with FLOPs per token
    short = compute.throughput(ModelConfig(preset="llama_130m"), "adamw", 1024)
    assert short.tokens_per_s == pytest.approx(369_148 * FLOPS_130M_2048 / FLOPS_130M)
    # llama_300m (341M with the head) is nearer to llama_520m (556M) than to llama_130m (152M) in log N
    assert compute.throughput(ModelConfig(preset="llama_300m"), "adamw", 2048).source == "adamw on llama_520m"
    # Muon was not measured on llama_520m: AdamW's MFU there over Muon's slowdown on the nearest preset
    # where both were measured (llama_1b at 1.28B, not llama_130m; llama_3b has no Muon measurement)
    muon = compute.throughput(ModelConfig(preset="llama_520m"), "muon", 2048)
    assert muon.tokens_per_s == pytest.approx(122_594 * 63_638 / 65_133)
    assert muon.source == "adamw on llama_520m ÷ 1.023, muon's slowdown on llama_1b"
    with pytest.raises(ValueError, match="no H100 measurement"):
        compute.throughput(ModelConfig(preset="llama_1b"), "nsgd", 2048)


def test_table_hours_count_shared_runs_once():
    by_table = compute.table_costs(["table1", "table9"])
    main_3b = next(c for c in by_table["table1"] if c.run == "main_3b optim=adamw")
    assert (main_3b.steps, main_3b.tokens) == (209_809, 209_809 * 256 * 2048)  # Tab. 6's 110B, rounded up
    assert main_3b.used_by == ("3B/AdamW",)
    assert main_3b.gpu_hours == pytest.approx(209_809 * 256 * 2048 / 31_826 / 3600)
    assert [len(by_table[t]) for t in ("table1", "table9")] == [4, 10]
    summary = compute.tables_markdown(by_table).splitlines()
    table9_new = [c for c in by_table["table9"] if c.run_dir not in {d.run_dir for d in by_table["table1"]}]
    assert len(table9_new) == 6
    assert summary[3].startswith("| table9 | 10 | ")
    assert summary[3].endswith(f"| 6 | {sum(c.gpu_hours for c in table9_new):,.0f} |")
    total = sum(c.gpu_hours for c in compute.distinct_runs(by_table))
    assert summary[-1] == f"| all (shared runs once) | 10 | {total:,.0f} | 10 | {total:,.0f} |"
    shared = next(c for c in compute.distinct_runs(by_table) if c.run_dir == main_3b.run_dir)
    assert shared.used_by == ("table1", "table9")


def test_reproduce_estimate_prints_the_runs_and_their_total(capsys):
    spec = importlib.util.spec_from_file_location("reproduce", REPO_ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["table1", "--estimate"]) == 0
    out = capsys.readouterr().out
    total = sum(c.gpu_hours for c in compute.table_costs(["table1"])["table1"])
    tokens = 2 * (95_368 + 209_809) * 256 * 2048
    assert out.count("| main_") == 4 and f"| total | | | | | {tokens / 1e9:.1f}B | | | {total:,.0f} |" in out


BENCH_NAMES = {"adamw": "adamw", "nexus(adamw)": "nexus", "muon": "muon", "nexus(muon)": "nexus_muon"}


def test_throughput_file_names_its_provenance_and_matches_the_bench_outputs():
    runs = json.loads((REPO_ROOT / "nexus_pretrain/experiments/throughput.json").read_text())["runs"]
    for run in runs:
        assert all(run[key] for key in ("commit", "gpu", "torch", "command", "results")), run["name"]
    for m in compute.H100_BENCH:
        out = json.loads((REPO_ROOT / m.file).read_text())
        row = out["results"]["ours"][BENCH_NAMES[m.optimizer]]
        assert (out["args"]["preset"], out["args"]["seq_len"]) == (m.preset, m.seq_len)
        assert (row["micro_batch"], round(row["tokens_per_s"])) == (m.micro_batch, m.tokens_per_s)
        assert round(row["mfu"], 3) == round(compute.measured_mfu(m), 3)


def test_performance_doc_shows_the_throughput_file():
    doc = (REPO_ROOT / "docs/performance.md").read_text()
    table = compute.bench_markdown()
    assert table in doc, f"docs/performance.md, 'What the estimates use': replace its table with\n{table}"


def test_load_bench_reads_a_file_and_checks_its_vocabulary(tmp_path):
    measurement = {"preset": "llama_1b", "optimizer": "adamw", "seq_len": 2048, "micro_batch": 16,
                   "tokens_per_s": 50_000, "file": "out.json"}
    data = {"vocab_size": 32000, "runs": [{"commit": "abc1234", "measurements": [measurement]}]}
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(data))
    (m,) = compute.load_bench(path)
    assert (m.tokens_per_s, m.commit, m.micro_batch) == (50_000, "abc1234", 16)
    assert compute.throughput(ModelConfig(preset="llama_1b"), "adamw", 2048, bench=(m,)).tokens_per_s == 50_000
    path.write_text(json.dumps({**data, "vocab_size": 50257}))
    with pytest.raises(ValueError, match="vocabulary 50257"):
        compute.load_bench(path)

"""nexus-analyze end to end on a tiny run: JSON results, figures, one-line errors."""

import json

import numpy as np
import pytest

from nexus_pretrain.analysis.command import main, run


def test_cosine_averages_over_checkpoints(run_dir, bench_dir, tmp_path):
    result = run(["cosine", str(run_dir), "--tasks", "gsm8k", "--data-dir", str(bench_dir), "--sequences", "2",
                  "--batch-size", "2", "--out", str(tmp_path)])
    stored = json.loads((tmp_path / "cosine.json").read_text())
    assert [c["step"] for c in stored["checkpoints"]] == [2, 3]
    for key, mean in stored["mean"].items():
        values = [c["cosines"][key] for c in stored["checkpoints"]]
        assert mean == pytest.approx(sum(values) / 2), key
    assert "cos/train-GSM8k" in result["mean"] and "mean/domains" in result["mean"]


def test_closeness_and_landscape_write_results(run_dir, bench_dir, tmp_path):
    common = ["--tasks", "gsm8k", "--data-dir", str(bench_dir), "--batch-size", "2", "--sequences", "2",
              "--out", str(tmp_path)]
    close = run(["closeness", str(run_dir), "--steps", "2", "--save-minimizer", "--domains", "math,legal", *common])
    assert list(close["tasks"]) == ["GSM8k", "math", "legal"]
    assert close["tasks"]["legal"]["examples"] == 2 and close["tasks"]["legal"]["distance"] > 0
    entry = close["tasks"]["GSM8k"]
    assert close["step"] == 3 and entry["distance"] > 0 and len(entry["losses"]) == 3
    assert close["settings"]["lr"] == 2e-5 and close["settings"]["weight_decay"] == 0.0
    assert (tmp_path / "closeness.json").is_file() and (tmp_path / "theta_GSM8k.pt").is_file()

    main(["landscape", str(run_dir), "--steps", "2", "--lr", "1e-3", "--grid", "3", "--direction", "filter", *common])
    data = np.load(tmp_path / "landscape_GSM8k.npz")
    assert data["alphas"].tolist() == [-0.5, 0.0, 0.5, 1.0, 1.5] and data["betas"].tolist() == [-1.0, 0.0, 1.0]
    assert data["loss_train"].shape == data["loss_GSM8k"].shape == (3, 5)
    assert np.isfinite(data["loss_GSM8k"]).all()
    summary = json.loads((tmp_path / "landscape.json").read_text())["tasks"]["GSM8k"]
    assert data["loss_GSM8k"][1, 1] == pytest.approx(summary["loss_before"], rel=1e-6)
    assert data["loss_GSM8k"][1, 3] == pytest.approx(summary["loss_after"], rel=1e-6)
    for suffix in ("png", "pdf"):
        assert (tmp_path / f"landscape_GSM8k.{suffix}").stat().st_size > 0


def test_fig7a_writes_nexus_eval_results_and_the_plot(run_dir, bench_dir, tmp_path):
    from nexus_pretrain.evaluation.results import load_results

    summary = run(["fig7a", str(run_dir), "--tasks", "gsm8k", "--data-dir", str(bench_dir), "--out", str(tmp_path)])
    assert [p["step"] for p in summary["points"]] == [2, 3]
    for path in summary["results"]:
        r = load_results(path)  # the schema nexus-report reads
        assert r["metrics"]["pretrain"] > 0 and r["metrics"]["loss"]["All"] == r["metrics"]["loss"]["GSM8k"]
    assert (tmp_path / "downstream_vs_pretrain.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["closeness", "{tmp}/nope", "--tasks", "gsm8k"], "nope not found"),
    (["closeness", "{run}", "--tasks", "gsm9k", "--data-dir", "{bench}"], "unknown benchmark(s) gsm9k"),
    (["cosine", "{run}", "--tasks", "math500", "--data-dir", "{bench}"], "math500/test.jsonl not found"),
    (["cosine", "{tmp}"], "not a checkpoint directory"),
    (["closeness", "{run}"], "give --tasks and/or --domains"),
    (["closeness", "{run}", "--domains", "poetry"], "unknown domain 'poetry'"),
    (["landscape", "{run}", "--tasks", "gsm8k", "--data-dir", "{bench}", "--grid", "1"], "need low < high"),
])
def test_bad_input_is_one_line(run_dir, bench_dir, tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path, run=run_dir, bench=bench_dir) for a in argv] + ["--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        main(argv)
    text = str(e.value.code)
    assert message in text and "\n" not in text and text.startswith("nexus-analyze")

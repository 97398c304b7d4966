"""nexus-analyze isoloss on synthetic run directories whose answer is known exactly."""

import json

import pytest
import yaml

from nexus_pretrain.analysis import isoloss, isoloss_report
from nexus_pretrain.analysis.command import run

T975_DF2 = 4.302652729749464  # the 0.975 quantile of Student's t with 2 degrees of freedom


def write_run(path, seed, endpoints, optim="nexus", max_steps=100, parent=None, from_step=None):
    """A run directory as nexus-train writes it: config.yaml, metrics.jsonl (training rows, an early evaluation,
    and the final step's training and evaluation rows apart), and for a branch branch.json. ``endpoints`` is
    [(pretrain, metric-dict)]: the run's own final evaluation first, then one cooldown branch per further entry."""
    (pretrain, metrics), branches = endpoints[0], endpoints[1:]
    path.mkdir(parents=True)
    optim_cfg = {"name": optim, "variant": optim, "outer": "adamw"}
    (path / "config.yaml").write_text(yaml.safe_dump({"trainer": {"seed": seed, "max_steps": max_steps},
                                                      "optim": optim_cfg}))
    early = max_steps // 2
    rows = [{"step": early, "loss": 9.0}, {"step": early, "val/pretrain": pretrain + 1.0,
                                           **{k: v + 1.0 for k, v in metrics.items()}},
            {"step": max_steps, "loss": pretrain}, {"step": max_steps, "val/pretrain": pretrain, **metrics}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if parent is not None:
        (path / "branch.json").write_text(json.dumps({"parent": str(parent), "from_step": from_step,
                                                      "max_steps": max_steps}))
    for i, branch in enumerate(branches):
        step = 40 + 20 * i
        write_run(path / "cooldown" / f"step_{step:08d}", seed, [branch], optim, max_steps=step + 10,
                  parent=path, from_step=step)
    return path


def line(loss, offset=0.0):
    """The metric of every synthetic curve: 1 + 2 * pretraining loss + offset."""
    return {"ood/mean": 1.0 + 2.0 * loss + offset}


DELTAS = {0: -0.02, 1: -0.03, 2: -0.01}


def two_arms(root, deltas=DELTAS, baseline_loss=3.3):
    """Candidate runs (nexus) on the line shifted by their seed's delta, endpoints at 3.0 (own) and 3.2, 3.5
    (branches); baseline runs (adamw) on the line, own endpoint at ``baseline_loss``, one branch at 3.6."""
    for seed, delta in deltas.items():
        write_run(root / "nexus" / str(seed), seed, [(x, line(x, delta)) for x in (3.0, 3.2, 3.5)])
        write_run(root / "adamw" / str(seed), seed, [(baseline_loss, line(baseline_loss)), (3.6, line(3.6))],
                  optim="adamw")
    return root / "nexus", root / "adamw"


@pytest.mark.parametrize("method", ["pchip", "linear"])
def test_matched_difference_is_the_known_offset(tmp_path, method):
    candidate, baseline = two_arms(tmp_path)
    result = isoloss.compare([candidate], [baseline], "ood/mean", method)
    assert [s["seed"] for s in result["seeds"]] == [0, 1, 2]
    for s in result["seeds"]:
        assert s["pretrain"] == 3.3 and s["baseline_metric"] == pytest.approx(7.6, abs=1e-12)
        assert s["candidate_metric"] == pytest.approx(7.6 + DELTAS[s["seed"]], abs=1e-12)
        assert s["difference"] == pytest.approx(DELTAS[s["seed"]], abs=1e-12)
        assert s["candidate_range"] == [3.0, 3.5]
        assert [e["from_step"] for e in s["candidate_endpoints"]] == [None, 40, 60]
    summary = result["summary"]
    half = T975_DF2 * 0.01 / 3 ** 0.5  # deltas: mean -0.02, std 0.01
    assert summary["mean"] == pytest.approx(-0.02, abs=1e-12) and summary["std"] == pytest.approx(0.01, abs=1e-12)
    assert summary["ci95"] == pytest.approx([-0.02 - half, -0.02 + half], abs=1e-6)
    assert summary["n"] == 3 and summary["method"] == "paired t over 3 seeds"
    assert (result["candidate"], result["baseline"], result["interpolation"]) == ("nexus(adamw)", "adamw", method)
    assert result["significance"].startswith("not significant")  # the interval includes 0


def test_significance_follows_the_reports_rule(tmp_path):
    deltas = {0: -0.05, 1: -0.04, 2: -0.06}
    result = isoloss.compare(*map(lambda p: [p], two_arms(tmp_path, deltas)), "ood/mean", "linear")
    assert result["summary"]["mean"] == pytest.approx(-0.05, abs=1e-12)
    assert result["significance"].startswith("candidate lower")
    assert isoloss.significance([0.05, 0.04, 0.06]).startswith("baseline lower")
    assert isoloss.significance([-0.005, -0.005, -0.006]).startswith("not significant")  # below 0.01


def test_interpolation_between_endpoints(tmp_path):
    """On a curved metric, linear interpolation is the chord; PCHIP stays within the bracketing endpoints."""
    write_run(tmp_path / "c", 0, [(3.0, {"val/math": 9.0}), (4.0, {"val/math": 16.0}), (5.0, {"val/math": 25.0})])
    write_run(tmp_path / "b", 0, [(3.5, {"val/math": 0.0})], optim="adamw")
    linear = isoloss.compare([tmp_path / "c"], [tmp_path / "b"], "val/math", "linear")["seeds"][0]
    assert linear["candidate_metric"] == pytest.approx(12.5, abs=1e-12)
    pchip = isoloss.compare([tmp_path / "c"], [tmp_path / "b"], "val/math", "pchip")["seeds"][0]
    assert 9.0 < pchip["candidate_metric"] < 12.5  # monotone and, here, below the chord of a convex curve


@pytest.mark.parametrize("baseline_loss, fix", [(2.9, "train it longer"), (3.55, "branch it earlier")])
def test_extrapolation_is_refused(tmp_path, baseline_loss, fix):
    candidate, baseline = two_arms(tmp_path, baseline_loss=baseline_loss)
    with pytest.raises(ValueError) as error:
        isoloss.compare([candidate], [baseline], "ood/mean")
    message = str(error.value)
    assert f"the baseline's pretraining loss {baseline_loss:.5f}" in message
    assert f"outside {candidate / '0'}'s range [3.00000, 3.50000] (3 endpoint(s))" in message
    assert "no extrapolation" in message and fix in message and "\n" not in message


def test_the_range_ends_are_inside(tmp_path):
    candidate, baseline = two_arms(tmp_path, baseline_loss=3.5)
    result = isoloss.compare([candidate], [baseline], "ood/mean")
    assert result["seeds"][0]["difference"] == pytest.approx(DELTAS[0], abs=1e-12)


def test_unpaired_and_duplicate_seeds_are_refused(tmp_path):
    candidate, baseline = two_arms(tmp_path)
    write_run(tmp_path / "nexus" / "3", 3, [(3.0, line(3.0)), (3.5, line(3.5))])
    with pytest.raises(ValueError, match=r"^unpaired seeds: candidate seed\(s\) \[3\] have no baseline run; "
                                         r"give both arms the same trainer.seed values$"):
        isoloss.compare([candidate], [baseline], "ood/mean")
    write_run(tmp_path / "again", 0, [(3.3, line(3.3))], optim="adamw")
    with pytest.raises(ValueError, match=r"two baseline runs have seed 0: .*adamw/0 and .*again$"):
        isoloss.compare([candidate / "0"], [baseline / "0", tmp_path / "again"], "ood/mean")


def test_missing_metric_unfinished_branch_and_bad_inputs_are_one_line_errors(tmp_path):
    candidate, baseline = two_arms(tmp_path)
    with pytest.raises(ValueError, match=r"no downstream/gsm8k at its final step 100; it logged ood/mean$"):
        isoloss.compare([candidate], [baseline], "downstream/gsm8k")
    with pytest.raises(ValueError, match=r"--metric 'val/pretrain': choose"):
        isoloss.compare([candidate], [baseline], "val/pretrain")
    with pytest.raises(ValueError, match=r"is a cooldown branch; give its parent run"):
        isoloss.compare([candidate / "0" / "cooldown" / "step_00000040"], [baseline], "ood/mean")
    branch = candidate / "1" / "cooldown" / "step_00000060"
    (branch / "metrics.jsonl").write_text(json.dumps({"step": 65, "loss": 3.0}) + "\n")  # stopped before step 70
    with pytest.raises(ValueError, match=r"step_00000060: no evaluation \(val/pretrain\) at its final step 70 "
                                         r"\(last step logged: 65\)"):
        isoloss.compare([candidate], [baseline], "ood/mean")


def test_cli_writes_the_table_json_and_figure(tmp_path, capsys):
    candidate, baseline = two_arms(tmp_path / "runs")
    out = tmp_path / "out"
    result = run(["isoloss", str(candidate / "0"), str(candidate / "1"), str(candidate / "2"),
                  "--baseline", str(baseline), "--metric", "ood/mean", "--interpolation", "linear", "--out", str(out)])
    stored = json.loads((out / "isoloss_ood_mean.json").read_text())
    assert stored["summary"]["mean"] == pytest.approx(-0.02, abs=1e-12) == result["summary"]["mean"]
    assert stored["figures"] == [str(out / "isoloss_ood_mean.png"), str(out / "isoloss_ood_mean.pdf")]
    assert all((out / f"isoloss_ood_mean.{s}").stat().st_size > 0 for s in ("png", "pdf"))
    printed = capsys.readouterr().out
    assert "     1     3.3000     7.6000     7.5700    -0.0300" in printed
    assert "mean -0.0200, std 0.0100, 95% CI [-0.0448, +0.0048] (paired t over 3 seeds)" in printed

    with pytest.raises(SystemExit) as stop:
        run(["isoloss", str(candidate), "--baseline", str(tmp_path / "nope"), "--out", str(out)])
    assert str(stop.value.code) == f"nexus-analyze isoloss: {tmp_path / 'nope'} not found"


def test_without_the_optional_packages(tmp_path, monkeypatch, capsys):
    """No matplotlib: the table and JSON, and the extra that brings the figure; no scipy: PCHIP says so."""
    import sys

    from nexus_pretrain.extras import missing

    def no_matplotlib(*args):
        raise missing("matplotlib", "plots need")

    candidate, baseline = two_arms(tmp_path / "runs")
    monkeypatch.setattr(isoloss_report, "plot", no_matplotlib)
    run(["isoloss", str(candidate), "--baseline", str(baseline), "--out", str(tmp_path / "out")])
    assert "figures" not in json.loads((tmp_path / "out" / "isoloss_ood_mean.json").read_text())
    assert 'no figure: plots need matplotlib: pip install "nexus_pretrain[plots]"' in capsys.readouterr().out

    monkeypatch.setitem(sys.modules, "scipy.interpolate", None)
    with pytest.raises(ValueError, match=r"^PCHIP interpolation needs scipy: pip install scipy \(or use "
                                         r"--interpolation linear\)$"):
        isoloss.compare([candidate], [baseline], "ood/mean", "pchip")
    assert isoloss.compare([candidate], [baseline], "ood/mean", "linear")["summary"]["n"] == 3


def test_points_all_adds_earlier_evaluations_of_runs_without_branches(tmp_path):
    """A run without branches has one decayed endpoint, so matching refuses; with points="all" its earlier
    evaluation (pretraining loss and metric one above the final's, see write_run) joins, on the same line."""
    for seed, delta in DELTAS.items():
        write_run(tmp_path / "nexus" / str(seed), seed, [(3.0, line(3.0, delta))])
        write_run(tmp_path / "adamw" / str(seed), seed, [(3.5, line(3.5))], optim="adamw")
    with pytest.raises(ValueError, match="lies outside"):
        isoloss.compare([tmp_path / "nexus"], [tmp_path / "adamw"], "ood/mean", "linear")
    # Earlier evaluation of seed s: pretrain 4.0, metric line(3.0, delta) + 1 = 8 + delta; final: (3.0, 7 + delta).
    # At 3.5 the linear interpolant is 7.5 + delta; the baseline's own final is line(3.5) = 8.0.
    result = isoloss.compare([tmp_path / "nexus"], [tmp_path / "adamw"], "ood/mean", "linear", points="all")
    assert result["points"] == "all"
    assert [s["difference"] for s in result["seeds"]] == pytest.approx([-0.5 + d for d in DELTAS.values()])
    # the baseline's earlier evaluation (step 50, pretrain 4.5) is a level of its own, outside [3.0, 4.0]
    levels = isoloss.compare([tmp_path / "nexus"], [tmp_path / "adamw"], "ood/mean", "linear", points="all",
                             levels=True)["levels"]
    assert [(level["baseline_endpoint"], len(level["excluded"])) for level in levels] == [("step 50", 3), ("final", 0)]
    with pytest.raises(ValueError, match="points 'some'"):
        isoloss.compare([tmp_path / "nexus"], [tmp_path / "adamw"], "ood/mean", "linear", points="some")


def test_gradient_cosine_is_a_metric(tmp_path):
    write_run(tmp_path / "nexus" / "0", 0, [(3.0, {"cos/mean": 0.1}), (3.4, {"cos/mean": 0.3})])
    write_run(tmp_path / "adamw" / "0", 0, [(3.2, {"cos/mean": 0.05})], optim="adamw")
    result = isoloss.compare([tmp_path / "nexus"], [tmp_path / "adamw"], "cos/mean", "linear")
    assert result["seeds"][0]["candidate_metric"] == pytest.approx(0.2)


def test_out_of_range_seeds_are_listed_and_left_out_when_asked(tmp_path):
    candidate, baseline = two_arms(tmp_path)
    write_run(tmp_path / "nexus" / "3", 3, [(x, line(x)) for x in (3.0, 3.2)])  # ends at 3.2 < baseline's 3.3
    write_run(tmp_path / "adamw" / "3", 3, [(3.3, line(3.3))], optim="adamw")
    with pytest.raises(ValueError, match="seed 3"):
        isoloss.compare([candidate], [baseline], "ood/mean", "linear")
    result = isoloss.compare([candidate], [baseline], "ood/mean", "linear", skip_out_of_range=True)
    assert [s["seed"] for s in result["seeds"]] == [0, 1, 2]
    assert [e["seed"] for e in result["excluded"]] == [3] and "lies outside" in result["excluded"][0]["reason"]
    assert "excluded seed 3" in isoloss_report.summary_text(result)


def test_runs_whose_losses_come_from_different_forwards_are_not_compared(tmp_path):
    """An FP8 run's val/pretrain comes through its FP8 layers: equal to a bf16 run's, it is not the same loss."""
    candidate, baseline = two_arms(tmp_path)

    def record(arm, **settings):
        for run in sorted(arm.iterdir()):
            config = yaml.safe_load((run / "config.yaml").read_text())
            for dotted, value in settings.items():
                section, key = dotted.split("__")
                config.setdefault(section, {})[key] = value
            (run / "config.yaml").write_text(yaml.safe_dump(config))

    record(candidate, model__float8="true", backend__precision="bf16")
    record(baseline, model__float8="false", backend__precision="bf16")
    with pytest.raises(ValueError, match=r"seed 0: .*nexus/0 logged its losses with FP8 evaluations=true and "
                                         r".*adamw/0 with FP8 evaluations=false: their val/pretrain come from "
                                         r"different forwards"):
        isoloss.compare([candidate], [baseline], "ood/mean", "linear", skip_out_of_range=True)
    record(candidate, model__float8_eval="bf16")  # trained in FP8, evaluated through bf16 matmuls: comparable
    assert isoloss.compare([candidate], [baseline], "ood/mean", "linear")["summary"]["n"] == 3
    for metrics in [*candidate.rglob("metrics.jsonl"), *baseline.rglob("metrics.jsonl")]:  # cosines: training forward
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        metrics.write_text("".join(json.dumps({**r, "cos/mean": r["ood/mean"]} if "ood/mean" in r else r) + "\n"
                                   for r in records))
    with pytest.raises(ValueError, match=r"with FP8 gradient cosines=true and .* FP8 gradient cosines=false"):
        isoloss.compare([candidate], [baseline], "cos/mean", "linear")
    record(candidate, model__float8_eval="fp8")
    record(baseline, model__float8="auto")  # saved before runs recorded what auto did: says nothing
    assert isoloss.compare([candidate], [baseline], "ood/mean", "linear")["summary"]["n"] == 3
    record(baseline, model__float8="true", backend__precision="fp32")
    with pytest.raises(ValueError, match=r"backend\.precision=bf16 and .* backend\.precision=fp32"):
        isoloss.compare([candidate], [baseline], "ood/mean", "linear")


def test_levels_match_at_each_of_the_baselines_endpoints(tmp_path, capsys):
    """Baselines on the line with endpoints 3.3 (own), 3.45 (branch from step 40) and 3.6 (from step 60):
    the candidate (range 3.0-3.5, line + delta) differs by its delta at 3.3 and 3.45; 3.6 is out of range."""
    for seed, delta in DELTAS.items():
        write_run(tmp_path / "nexus" / str(seed), seed, [(x, line(x, delta)) for x in (3.0, 3.2, 3.5)])
        write_run(tmp_path / "adamw" / str(seed), seed, [(x, line(x)) for x in (3.3, 3.45, 3.6)], optim="adamw")
    result = isoloss.compare([tmp_path / "nexus"], [tmp_path / "adamw"], "ood/mean", "linear", levels=True)
    assert [level["baseline_endpoint"] for level in result["levels"]] == [
        "cooldown from step 60", "cooldown from step 40", "final"]
    out_of_range, branch, final = result["levels"]
    assert out_of_range["seeds"] == [] and "summary" not in out_of_range
    assert [e["seed"] for e in out_of_range["excluded"]] == [0, 1, 2]
    assert "the baseline's pretraining loss 3.60000" in out_of_range["excluded"][0]["reason"]
    for level, loss in ((branch, 3.45), (final, 3.3)):
        assert level["pretrain"] == pytest.approx(loss, abs=1e-12)
        assert [s["difference"] for s in level["seeds"]] == pytest.approx(list(DELTAS.values()), abs=1e-12)
        assert level["summary"]["mean"] == pytest.approx(-0.02, abs=1e-12) and level["summary"]["n"] == 3
    assert final["summary"] == result["summary"] and final["significance"] == result["significance"]
    assert "levels" not in isoloss.compare([tmp_path / "nexus"], [tmp_path / "adamw"], "ood/mean", "linear")
    text = isoloss_report.summary_text(result)
    assert "cooldown from step 60" in text and "every seed outside the candidate's range" in text
    assert "cooldown from step 40" in text and "-0.0200" in text


def test_cli_levels(tmp_path, capsys):
    candidate, baseline = two_arms(tmp_path)
    result = run(["isoloss", str(candidate), "--baseline", str(baseline), "--levels", "--out", str(tmp_path / "out")])
    assert [level["baseline_endpoint"] for level in result["levels"]] == ["cooldown from step 40", "final"]
    saved = json.loads((tmp_path / "out" / "isoloss_ood_mean.json").read_text())
    assert saved["levels"][1]["summary"]["mean"] == pytest.approx(-0.02, abs=1e-12)

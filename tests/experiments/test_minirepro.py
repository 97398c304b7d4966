"""The mini reproduction's pieces that run on CPU: the corpus builder's text conversion and document
cuts, the GPU runner's step scaling and run grid, and the report's paired statistics and verdicts."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from nexus_pretrain.report.stats import t975

REPO_ROOT = Path(__file__).resolve().parents[2]


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = load("data_pipelines/minirepro/build_corpus.py", "minirepro_build")
run = load("scripts/minirepro/run.py", "minirepro_run")
report = load("scripts/minirepro/report.py", "minirepro_report")


def test_roff_to_text_keeps_headings_paragraphs_and_inline_text():
    page = "\n".join([
        '.\\" a comment', ".TH TAR 1", ".SH NAME", "tar \\- an archiving utility", ".SH \"SEE ALSO\"",
        ".B tar", "reads \\fBfiles\\fR and \\fIdirectories\\fP\\(emall of them.", ".PP",
        ".IP \\(bu 2", "one item", ".BR gzip (1),", "it\\(aqs \\(dqquoted\\(dq",
    ])
    assert build.roff_to_text(page) == (
        "NAME\ntar - an archiving utility\n\nSEE ALSO\ntar\nreads files and directories--all of them.\n\n*\n"
        "one item\ngzip (1),\nit's \"quoted\"")


def test_documents_are_cut_below_the_size_limit_and_short_ones_dropped(monkeypatch):
    monkeypatch.setattr(build, "MAX_DOC_CHARS", 100)
    monkeypatch.setattr(build, "MIN_DOC_CHARS", 10)
    text = "\n\n".join(["x" * 40] * 5)
    docs = list(build.split_paragraph_docs(text))
    assert [len(d) for d in docs] == [82, 82, 40] and "".join(docs).count("x") == 200
    assert list(build.split_paragraph_docs("tiny")) == []
    code = "import os\n" + "".join(f"def f{i}():\n    return {i}\n" for i in range(12))
    pieces = list(build.split_code_docs(code))
    assert len(pieces) > 1 and all(len(p) <= 100 for p in pieces)
    assert "\n".join(pieces) == code  # cut only before top-level definitions, nothing lost
    assert all(p.startswith(("import", "def ")) for p in pieces)


def test_step_overrides_scale_schedule_and_intervals_with_the_steps():
    assert run.step_overrides(330) == [
        "trainer.max_steps=330", "schedule.warmup_steps=17", "schedule.decay_steps=66", "trainer.eval_every=82",
        "trainer.checkpoint_every=82", "logging.cosine_every=41"]


def test_main_phase_pairs_adamw_and_nexus_on_every_seed():
    names = [r.name for r in run.PHASES["main"]]
    assert names == [f"{o}_math10_seed{s}" for s in (0, 1, 2) for o in ("adamw", "nexus")]
    for r in run.PHASES["main"]:
        assert f"trainer.seed={r.name[-1]}" in r.overrides


def test_paired_ci_is_the_t_interval_of_the_per_seed_differences():
    mean, std, ci = report.paired([0.1, 0.2, 0.3])
    half = t975(2) * 0.1 / math.sqrt(3)
    assert (mean, std) == (pytest.approx(0.2), pytest.approx(0.1))
    assert ci == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert report.paired([0.5]) == (0.5, 0.0, None)


@pytest.mark.parametrize("ci, sign, want", [
    ((0.1, 0.3), +1, "reproduced"), ((-0.3, -0.1), +1, "not reproduced"), ((-0.1, 0.2), +1, "inconclusive"),
    ((-0.3, -0.1), -1, "reproduced"), (None, +1, "inconclusive (one seed)")])
def test_verdict_follows_the_side_of_zero_the_ci_lies_on(ci, sign, want):
    assert report.verdict(ci, sign) == want


def test_the_pretraining_loss_claim_takes_the_reports_one_verdict():
    """The stored Math10 runs differ by -0.27 in pretraining loss: "not the same pretraining loss" (report.stats),
    with the sentence that the OOD and downstream claims are therefore not at the same pretraining loss."""
    rows = {"adamw": [3.0329, 2.9070, 3.0627], "nexus": [2.8392, 2.7355, 2.6203]}
    runs = {f"{o}_math10_seed{s}": {"result": {"metrics": {"pretrain": v, "ood": v, "loss": {}, "accuracy": {}}},
                                    "rows": []} for o, vals in rows.items() for s, v in enumerate(vals)}
    text, claims = report.claims_table(runs, [0, 1, 2], [])
    assert claims[0]["verdict"] == "not the same pretraining loss" and claims[0]["mean"] == pytest.approx(-0.2692, abs=1e-4)
    assert "not at the same pretraining loss" in text
    runs = {k: {"result": {"metrics": dict(v["result"]["metrics"], pretrain=3.0 + 0.001 * int(k[-1]))}, "rows": []}
            for k, v in runs.items()}
    text, claims = report.claims_table(runs, [0, 1, 2], [])
    assert claims[0]["verdict"] == "same pretraining loss" and "not at the same" not in text

"""Original MMLU csv and BBH json releases become the layout our task YAMLs read."""

import csv
import json

import pytest

from nexus_pretrain.evaluation.convert import bbh_from_json, mmlu_from_csv


def test_mmlu_original_csv_release(tmp_path):
    for split in ("test", "dev"):
        (tmp_path / "src" / split).mkdir(parents=True)
        with open(tmp_path / "src" / split / f"high_school_physics_{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["What is g, roughly?", "1", "9.8 m/s^2", "100", "0", "B"],
                                     ['A "quoted", comma question?', "a", "b", "c", "d", "D"]])
    mmlu_from_csv(tmp_path / "src", tmp_path / "data")
    rows = [json.loads(line) for line in (tmp_path / "data" / "mmlu" / "test.jsonl").read_text().splitlines()]
    assert rows[0] == {"question": "What is g, roughly?", "subject": "high_school_physics",
                       "choices": ["1", "9.8 m/s^2", "100", "0"], "answer": 1}
    assert rows[1]["question"] == 'A "quoted", comma question?' and rows[1]["answer"] == 3
    assert (tmp_path / "data" / "mmlu" / "dev.jsonl").is_file()


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*_test.csv"):
        mmlu_from_csv(tmp_path, tmp_path / "data")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "x_test.csv").write_text("q,a,b,c,d,E\n")
    with pytest.raises(ValueError, match="x_test.csv: line 1"):
        mmlu_from_csv(tmp_path, tmp_path / "data")


def test_bbh_original_json_release(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "navigate.json").write_text(json.dumps(
        {"canary": "BIG-bench canary", "examples": [{"input": "Take 1 step.", "target": "No"}]}))
    bbh_from_json(tmp_path / "src", tmp_path / "data")
    assert json.loads((tmp_path / "data" / "bbh" / "navigate.jsonl").read_text()) == {"input": "Take 1 step.", "target": "No"}

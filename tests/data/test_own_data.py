"""Training on your own files: nexus-data prepare DOMAIN=FILES, and data.domains as the whole mixture."""

import json

import pytest

from nexus_pretrain import cli
from nexus_pretrain.data import store
from nexus_pretrain.data.inline import inline_recipe
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.overrides import compose, replacing


@pytest.fixture(scope="module")
def own_shards(tmp_path_factory):
    """cooking (jsonl), law (a folder of parquet) and notes (txt files, OOD) prepared by the command line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("own")
    (root / "law").mkdir()
    (root / "notes").mkdir()
    (root / "cooking.jsonl").write_text("".join(
        json.dumps({"body": f"Recipe {i}: fry the onion, add rice and simmer {i % 30 + 5} minutes."}) + "\n"
        for i in range(120)))
    pq.write_table(pa.table({"body": [f"Section {i}. The tenant pays {i * 7 % 900} euros." for i in range(120)]}),
                   root / "law" / "contracts.parquet")
    for i in range(30):
        (root / "notes" / f"{i}.txt").write_text(f"Meeting note {i}: budget agreed, next meeting on Monday.")
    out = root / "shards"
    cli.data(["prepare", f"cooking={root / 'cooking.jsonl'}", f"law={root / 'law'}", f"notes={root / 'notes'}",
              "--ood", "notes", "--text-field", "body", "--val-fraction", "0.2", "--out", str(out), "--no-progress"])
    return out


def test_prepare_names_domains_from_the_command_line(own_shards):
    manifests = {d: store.complete_manifest(own_shards, d) for d in ("cooking", "law", "notes")}
    assert manifests["cooking"]["source"] == "local:jsonl files=1"
    assert manifests["law"]["source"] == "local:parquet files=1"
    assert manifests["notes"]["source"] == "local:txt files=30"
    assert [m["ood"] for m in manifests.values()] == [False, False, True]
    assert manifests["notes"]["splits"]["train"]["tokens"] == 0 and manifests["notes"]["splits"]["val"]["documents"] == 30
    assert manifests["cooking"]["val_fraction"] == 0.2
    assert manifests["cooking"]["splits"]["train"]["documents"] + manifests["cooking"]["splits"]["val"]["documents"] == 120


def test_a_domains_dict_is_the_whole_mixture(own_shards):
    """The exact command line of docs/own-data.md: before, Hydra refused `cooking` (not in struct) or added it
    to web/math/code."""
    line = ["data=own", f"data.path={own_shards}", "data.domains={cooking: 0.7, law: 0.3}", "data.ood_domains=[notes]"]
    cli.check_overrides(line)
    cfg = compose(line)
    assert cfg.data.domains == {"cooking": 0.7, "law": 0.3} and cfg.data.ood_domains == ["notes"]
    assert compose(["data=math10", "data.fixed_shares={}"]).data.fixed_shares == {}
    assert compose(["+data.domains.cooking=1"]).data.domains == {"web": 1.0, "math": 1.0, "code": 1.0, "cooking": 1.0}
    assert replacing(["data.domains={a: 1},{b: 1}", "+data.domains={a: 1}", "data.name=x", "~data.domains"]) == \
        ["++data.domains={a: 1},{b: 1}", "++data.domains={a: 1}", "data.name=x", "~data.domains"]


def test_unknown_and_missing_domains_name_what_the_shards_hold(own_shards):
    holds = "which holds train domains cooking, law; OOD domains notes"
    with pytest.raises(ConfigError, match=f"data.domains: baking not prepared under {own_shards}, {holds}; "
                                          r"set 'data.domains=\{cooking: 1.0, law: 1.0\}'"):
        cli.check_overrides(["data=own", f"data.path={own_shards}", "data.domains={cooking: 0.5, baking: 0.5}"])
    with pytest.raises(ConfigError, match=f"data.domains: web, math, code not prepared under {own_shards}"):
        cli.check_overrides(["data=own", f"data.path={own_shards}"])  # no domains named: the defaults
    with pytest.raises(ConfigError, match="data.domains: notes prepared as OOD"):
        cli.check_overrides(["data=own", f"data.path={own_shards}", "data.domains={notes: 1}"])
    with pytest.raises(ConfigError, match=f"data.ood_domains: legal not prepared under {own_shards}, {holds}"):
        cli.check_overrides(["data=own", f"data.path={own_shards}", "data.domains={law: 1}", "data.ood_domains=[legal]"])
    with pytest.raises(ConfigError, match="data.path=nowhere: no such folder"):
        cli.check_overrides(["data=own", "data.path=nowhere", "data.domains={law: 1}"])
    with pytest.raises(ConfigError, match="data.domains.law=x: could not be converted to Float"):
        cli.check_overrides(["data=own", "data.domains={law: x}"])


def test_bad_file_arguments_fail_with_one_line(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "b.csv").write_text("x\n")
    (tmp_path / "c.txt").write_text("x\n")
    for spec, message in ((f"a={tmp_path / 'none.jsonl'}", "matches no file"),
                          (f"a={tmp_path / 'b.csv'}", "is not .jsonl, .json, .parquet or .txt"),
                          (f"a={tmp_path / 'a.jsonl'},{tmp_path / 'c.txt'}", r"files of several formats \(jsonl, txt\)"),
                          (f"9a={tmp_path / 'a.jsonl'}", "must be a name of letters")):
        with pytest.raises(ValueError, match=message):
            inline_recipe(spec)
    with pytest.raises(SystemExit):
        cli.data(["prepare", f"a={tmp_path / 'a.jsonl'}", "--ood", "b", "--out", str(tmp_path / "out")])
    assert "--ood b: no DOMAIN=FILES argument names it" in capsys.readouterr().err

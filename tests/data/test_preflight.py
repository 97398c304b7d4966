"""Start-up checks: what used to fail only after training (or trained silently on bad data) fails first."""

import os
import threading
import time
import warnings

import numpy as np
import pytest

from nexus_pretrain.cli import data as data_cli
from nexus_pretrain.data import store, verify
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.run_data import build_data
from nexus_pretrain.data.prepare import ValidationSplitWarning, prepare
from nexus_pretrain.data.tokens import cache_key, default_cache_dir
from nexus_pretrain.demo import compose_config
from nexus_pretrain.train.preflight import PreflightWarning, checkpoint_bytes, preflight

from .conftest import make_documents, write_recipe

SMALL = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
         "data.seq_len=16", "data.eval_sequences=2", "trainer.global_batch=4", "trainer.micro_batch=2",
         "logging.progress_bar=false"]
N_PARAMS = 10_000  # a tiny model's order of magnitude: far below any free disk


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """The verified-shards cache (and token cache) in a fresh folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def embedded_config(run_dir, *extra):
    return compose_config([*SMALL, f"trainer.run_dir={run_dir}", *extra])


def test_validation_split_shorter_than_seq_len_is_refused_before_training(tmp_path):
    # Embedded web has 5729 validation tokens: seq_len 8192 trains (its train split is long enough), but the
    # first evaluation, at the end of the run at the latest, would fail.
    cfg = embedded_config(tmp_path / "run", "data.seq_len=8192")
    data = build_data(cfg.data, seed=0)
    with pytest.raises(ConfigError, match=r"^data.seq_len=8192: the validation split of domain 'web' holds 5729 "
                                          r"tokens, .* lower data.seq_len to at most 5728 or hold out more"):
        preflight(cfg, data, tmp_path / "run", N_PARAMS)
    cfg = embedded_config(tmp_path / "run", "data.seq_len=8192", "data.ood_domains=[web]")
    cfg.data.domains = {"code": 1.0}
    with pytest.raises(ConfigError, match=r"the OOD domain 'web' holds 5729 tokens, .* drop it from data.ood_domains"):
        preflight(cfg, build_data(cfg.data, seed=0), tmp_path / "run", N_PARAMS)
    cfg.data.seq_len = 5728  # exactly one window fits
    assert preflight(cfg, build_data(cfg.data, seed=0), tmp_path / "run", N_PARAMS) is None


def test_unwritable_run_checkpoint_and_export_dirs_are_refused(tmp_path):
    cfg = embedded_config(tmp_path / "run")
    data = build_data(cfg.data, seed=0)
    preflight(cfg, data, tmp_path / "run", N_PARAMS)
    assert not (tmp_path / "run").exists()  # checking creates nothing
    for blocker, purpose in [("run", "metrics and config"), ("run/checkpoints", "checkpoints"),
                             ("run/hf", "the exported model")]:
        (tmp_path / blocker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / blocker).write_text("a file where a folder goes")
        with pytest.raises(ConfigError, match=rf"^trainer.run_dir={tmp_path / 'run'}: {tmp_path / blocker} is not a "
                                              rf"directory, so {purpose} .* choose a writable trainer.run_dir$"):
            preflight(cfg, data, tmp_path / "run", N_PARAMS)
        (tmp_path / blocker).unlink()
    cfg.trainer.export_hf = False
    (tmp_path / "run" / "hf").write_text("not exported, so not in the way")
    preflight(cfg, data, tmp_path / "run", N_PARAMS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_dir_is_refused(tmp_path):
    cfg = embedded_config(tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run").chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=r"cannot create files in .*Permission denied"):
            preflight(cfg, build_data(cfg.data, seed=0), tmp_path / "run", N_PARAMS)
    finally:
        (tmp_path / "run").chmod(0o755)


def test_too_little_disk_for_one_checkpoint_warns(tmp_path):
    cfg = embedded_config(tmp_path / "run")
    assert checkpoint_bytes(1000, cfg.optim) == 1000 * 4 * 3  # fp32 weights and Adam's two moments
    cfg.optim.name, cfg.optim.outer = "nexus", "muon"
    assert checkpoint_bytes(1000, cfg.optim) == 1000 * 4 * 3
    data = build_data(cfg.data, seed=0)
    with pytest.warns(PreflightWarning, match=r"GiB free, but one checkpoint takes about 4470348.36 GiB \("
                                              r"400,000,000,000,000 parameters"):
        preflight(cfg, data, tmp_path / "run", 400 * 10**12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PreflightWarning)
        preflight(cfg, data, tmp_path / "run", N_PARAMS)


def test_out_of_vocabulary_ids_in_cached_tokens_name_domain_and_offset(tmp_path, private_cache):
    cfg = embedded_config(tmp_path / "run", "data.ood_domains=[]")
    cfg.data.domains = {"web": 1.0}
    data = build_data(cfg.data, seed=0)  # writes the token cache
    cached = default_cache_dir() / cache_key(data.tokenizer) / "web-val-valfrac0.05.npy"
    tokens = np.load(cached)
    tokens[1234] = 60000  # a uint16 id beyond the 8192-id tokenizer: an IndexError in the embedding otherwise
    np.save(cached, tokens)
    with pytest.raises(ValueError, match=r"^data.source=embedded: the validation split of domain 'web' has token id "
                                         r"60000 at offset 1234, outside the tokenizer's 8192 ids; .* delete "):
        preflight(cfg, build_data(cfg.data, seed=0), tmp_path / "run", N_PARAMS)


@pytest.fixture
def shards(tmp_path):
    """Two prepared domains (alpha trains, gamma is OOD) in several shards each."""
    recipes = []
    for seed, domain in enumerate(["alpha", "gamma"]):
        (tmp_path / f"{domain}.txt").write_text("\n".join(make_documents(40, seed=20 + seed)), encoding="utf-8")
        recipes.append(write_recipe(tmp_path / f"{domain}.yaml",
                                    f"domain: {domain}\nsource:\n  local: {{paths: [{domain}.txt], format: txt, "
                                    f"sample_by: line}}\nval_fraction: 0.3\nood: {str(domain == 'gamma').lower()}\n"))
    with pytest.warns(ValidationSplitWarning):
        prepare(recipes, tmp_path / "out", shard_tokens=400, progress=False)
    return tmp_path / "out"


def shard_run(root, run_dir):
    cfg = compose_config([*SMALL, "data=shards", f"data.path={root}", "data.ood_domains=[gamma]",
                          f"trainer.run_dir={run_dir}"])
    cfg.data.domains = {"alpha": 1.0}
    return cfg, build_data(cfg.data, seed=0)


def flip_byte(path, offset=3, keep_times=False):
    """Damage a shard in place, keeping its size (and, optionally, its access and modification times)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_times:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def scans(monkeypatch):
    """Paths verify.scan read (the real function, counted)."""
    seen = []
    real = verify.scan

    def counted(path, dtype):
        seen.append(path)
        return real(path, dtype)

    monkeypatch.setattr(verify, "scan", counted)
    return seen


def test_same_size_corrupt_shard_fails_at_start_up_and_checksums_are_read_once(tmp_path, shards, private_cache,
                                                                               scans):
    cfg, data = shard_run(shards, tmp_path / "run")
    every = verify.manifest_shards(shards, "alpha") + verify.manifest_shards(shards, "gamma")
    assert len(every) >= 4
    preflight(cfg, data, tmp_path / "run", N_PARAMS)
    assert sorted(scans) == sorted(s.path for s in every)
    scans.clear()
    preflight(cfg, data, tmp_path / "run", N_PARAMS)  # a second run reads nothing again
    assert scans == []

    victim = every[1].path
    flip_byte(victim, keep_times=True)  # same size and mtime: the ctime still changes
    cfg, data = shard_run(shards, tmp_path / "run")  # opening the streams checks sizes only, as before
    with pytest.raises(ValueError, match=rf"^{victim}: checksum mismatch \(sha256 differs from the manifest\)"):
        preflight(cfg, data, tmp_path / "run", N_PARAMS)
    assert scans == [victim]


def test_out_of_vocabulary_shard_id_names_shard_and_offset(tmp_path, shards, private_cache):
    victim = verify.manifest_shards(shards, "alpha")[0]
    tokens = np.fromfile(victim.path, dtype=victim.dtype)
    tokens[37] = 9000  # the embedded tokenizer has 8192 ids
    tokens.tofile(victim.path)
    manifest = store.read_manifest(shards, "alpha")  # a manifest rewritten to match: only the ids are wrong
    manifest["splits"]["train"]["shards"][0]["sha256"] = store.sha256_file(victim.path)
    store.write_manifest(shards, "alpha", manifest)
    cfg, data = shard_run(shards, tmp_path / "run")
    with pytest.raises(ValueError, match=rf"^{victim.path}: token id 9000 at offset 37 is outside the tokenizer's 8192 "
                                         r"ids;"):
        preflight(cfg, data, tmp_path / "run", N_PARAMS)


def test_large_checks_run_in_the_background_and_interrupt_the_run(tmp_path, shards, private_cache, caplog):
    cfg, data = shard_run(shards, tmp_path / "run")
    check = preflight(cfg, data, tmp_path / "run", N_PARAMS, background_bytes=0)
    assert check.thread is not None
    check.wait()

    victim = verify.manifest_shards(shards, "gamma")[0].path
    flip_byte(victim)
    cfg, data = shard_run(shards, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):  # lands at the main thread's next instruction, wherever it is
        preflight(cfg, data, tmp_path / "run", N_PARAMS, background_bytes=0)
        for _ in range(1000):
            time.sleep(0.01)
    assert f"error: {victim}: checksum mismatch" in caplog.text
    for thread in threading.enumerate():
        if thread.name == "nexus-shard-check":
            thread.join()
    with pytest.raises(ValueError, match=rf"^{victim}: checksum mismatch"):  # the damage was not cached as verified
        preflight(cfg, data, tmp_path / "run", N_PARAMS)


def test_nexus_data_verify_reads_every_shard(tmp_path, shards, private_cache, capsys):
    data_cli(["verify", str(shards)])
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["ok  alpha", "ok  gamma"]
    assert "sizes, sha256 and ids (< 8192) match" in out[0]
    data_cli(["verify", str(shards / "gamma")])  # one domain's folder
    assert capsys.readouterr().out.startswith("ok  gamma:")

    victim = verify.manifest_shards(shards, "alpha")[-1].path
    flip_byte(victim, keep_times=True)
    with pytest.raises(SystemExit) as exit_info:
        data_cli(["verify", str(shards)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 1 and captured.out.startswith("ok  gamma:")
    assert captured.err == f"error: {victim}: checksum mismatch (sha256 differs from the manifest); prepare it again\n"
    with pytest.raises(SystemExit) as exit_info:
        data_cli(["verify", str(tmp_path)])  # no domains here
    assert exit_info.value.code == 2 and "no prepared domain here" in capsys.readouterr().err


def test_prepare_warns_on_an_empty_or_tiny_validation_split(tmp_path, fineweb_like, capsys):
    recipe, _ = fineweb_like
    with pytest.warns(ValidationSplitWarning, match=r"^domain 'web': the validation split holds only \d+ tokens \(\d+ "
                                                    r"documents\), under 32 evaluation windows .* need data.seq_len "
                                                    r"below \d+; raise the recipe's val_fraction \(now 0.1\)"):
        prepare([recipe], tmp_path / "out", progress=False)
    (tmp_path / "few.txt").write_text("one document\nanother document\na third document\n", encoding="utf-8")
    few = write_recipe(tmp_path / "few.yaml", "domain: few\nsource:\n  local: {paths: [few.txt], format: txt, "
                                              "sample_by: line}\nval_fraction: 0.01\n")
    data_cli(["prepare", str(few), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert err.startswith("warning: domain 'few': the validation split is empty (3 documents in all); a run "
                          "evaluating it fails at start-up; raise the recipe's val_fraction (now 0.01)")

"""Building SFT data from local files shaped like hub datasets and the generated set, and its one-line errors."""

import pytest

from nexus_pretrain.config_checks import validate
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.run_data import build_data
from nexus_pretrain.data.layout import batch_layout
from nexus_pretrain.sft.sampler import IGNORE

from .conftest import small_config, write_jsonl


def _data_cfg(tmp_path, *overrides):
    return small_config(tmp_path / "run", "data=sft", "data.seq_len=48", "data.ood_domains=[]", *overrides).data


def _one_line_error(exc_type, fn, match):
    with pytest.raises(exc_type, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_prompt_response_jsonl_holds_out_a_fixed_split(tmp_path, prompt_response_file):
    data = build_data(_data_cfg(tmp_path, f"data.sft.dataset={prompt_response_file}", "data.val_fraction=0.25",
                                "data.eval_sequences=40"), seed=0)
    train, val = data.sampler.examples, data.val_streams["sft"]
    assert len(train) + len(val) == 40 and 0 < len(val) < 20
    capped = build_data(_data_cfg(tmp_path, f"data.sft.dataset={prompt_response_file}", "data.val_fraction=0.25",
                                  "data.eval_sequences=3"), seed=0)
    assert len(capped.val_streams["sft"]) == 3 and len(capped.sampler.examples) == len(train)  # only scored rows
    assert data.sampler.domains == ["sft"] and data.sampler.weights == {"sft": 1.0} and data.ood_streams == {}
    again = build_data(_data_cfg(tmp_path, f"data.sft.dataset={prompt_response_file}", "data.val_fraction=0.25"), seed=5)
    assert again.sampler.examples.ids.tolist() == train.ids.tolist()  # the split does not depend on the seed
    batch = data.sampler.micro_batch(0, batch_layout(4, 1, 1, 4), 0)
    text = data.tokenizer.decode([t for t in batch.targets[0].tolist() if t != IGNORE])
    assert text.startswith(" ") and "The answer is" in text and text.endswith("<|endoftext|>") and "User" not in text


def test_messages_parquet_like_no_robots_and_overlong_handling(tmp_path, messages_file):
    cfg = _data_cfg(tmp_path, f"data.sft.dataset={messages_file}", "data.sft.system_prompt=Ignored.")
    data = build_data(cfg, seed=0)
    batch = data.sampler.micro_batch(0, batch_layout(1, 1, 1, 1), 0)
    trained = data.tokenizer.decode([t for t in batch.targets[0].tolist() if t != IGNORE])
    assert trained.startswith(" Number") and " Still" in trained and "Again" not in trained
    assert "Ignored" not in data.tokenizer.decode(batch.inputs[0].tolist())  # the row has its own system message
    short = build_data(_data_cfg(tmp_path, f"data.sft.dataset={messages_file}", "data.seq_len=24"), seed=0)
    assert short.sampler.stats["train"].truncated == short.sampler.stats["train"].examples
    _one_line_error(ValueError, lambda: build_data(_data_cfg(tmp_path, f"data.sft.dataset={messages_file}", "data.seq_len=24",
                                                             "data.sft.overlong=drop"), seed=0),
                    r"all \d+ examples are longer than data.seq_len \+ 1 = 25 tokens")


def test_generated_math_set_and_its_tiny_experiment_compose():
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.sft.examples import embedded_math_rows

    rows = embedded_math_rows(50)
    assert rows == embedded_math_rows(50) and rows[0]["response"].splitlines()[-1].startswith("The answer is ")
    for optim in ("adamw", "nexus"):
        cfg = compose_config(["+experiment=tiny/sft", f"optim={optim}"])
        validate(cfg)
        assert cfg.data.source == "sft" and cfg.data.sft.dataset == "embedded_math" and cfg.model.n_layers == 6
    paper = compose_config(["+experiment=sft", "optim=nexus"])
    validate(paper)
    assert paper.optim.lr == 2e-5 and paper.trainer.global_batch == 256 and paper.model.preset == "llama_3b"


def test_bad_inputs_fail_with_one_line(tmp_path, prompt_response_file):
    missing = tmp_path / "nope.jsonl"
    _one_line_error(ValueError, lambda: build_data(_data_cfg(tmp_path, f"data.sft.dataset={missing}"), 0),
                    r"data.sft.dataset=.*nope.jsonl' not found")
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"question": "q", "answer": "a"}] * 3)
    _one_line_error(ValueError, lambda: build_data(_data_cfg(tmp_path, f"data.sft.dataset={wrong}"), 0),
                    r"no 'messages' column and not both 'prompt' and 'response' \(columns: question, answer\)")
    renamed = build_data(_data_cfg(tmp_path, f"data.sft.dataset={wrong}", "data.sft.prompt_field=question",
                                   "data.sft.response_field=answer", "data.val_fraction=0.5"), 0)
    assert len(renamed.sampler.examples) >= 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _one_line_error(ValueError, lambda: build_data(_data_cfg(tmp_path, f"data.sft.dataset={empty}"), 0), r"no examples|expected")
    _one_line_error(ValueError, lambda: build_data(_data_cfg(tmp_path, f"data.sft.dataset={prompt_response_file}",
                                                             "data.sft.val_split=test"), 0), r"local files have one split")
    _one_line_error(ConfigError, lambda: validate(small_config(tmp_path, "data=sft")), r"data.sft.dataset is not set")
    _one_line_error(ConfigError, lambda: validate(small_config(tmp_path, "data=sft_embedded_math", "data.sft.overlong=cut")),
                    r"data.sft.overlong='cut' is not one of truncate, drop")
    _one_line_error(ConfigError, lambda: validate(small_config(tmp_path, f"trainer.init_from={tmp_path / 'absent'}")),
                    r"trainer.init_from=.*absent' does not exist")


def test_hub_names_go_to_load_dataset_with_subset_and_splits(tmp_path, monkeypatch, messages_file):
    import datasets

    real, calls = datasets.load_dataset, []

    def hub(name, subset=None, split=None, **kwargs):  # the hub, served from a local copy of the same shape
        calls.append((name, subset, split))
        if name == "someone/missing":
            raise datasets.exceptions.DatasetNotFoundError("Dataset 'someone/missing' doesn't exist on the Hub\nmore")
        return real("parquet", data_files=[str(messages_file)], split="train")

    monkeypatch.setattr(datasets, "load_dataset", hub)
    data = build_data(_data_cfg(tmp_path, "data.sft.dataset=HuggingFaceH4/no_robots", "data.sft.subset=default",
                                "data.sft.val_split=test"), 0)
    assert calls == [("HuggingFaceH4/no_robots", "default", "train"), ("HuggingFaceH4/no_robots", "default", "test")]
    assert len(data.sampler.examples) == 30 and len(data.val_streams["sft"]) == 8  # data.eval_sequences
    _one_line_error(ValueError, lambda: build_data(_data_cfg(tmp_path, "data.sft.dataset=someone/missing"), 0),
                    r"data.sft.dataset='someone/missing' split 'train': Dataset 'someone/missing' doesn't exist")

"""trainer.init_from: exactly the pretrained weights, from a checkpoint, a run or an HF directory; fresh optimizer."""

import pytest
import torch

from nexus_pretrain.model.llama import Llama, ModelArgs
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.export import load_checkpoint_weights
from nexus_pretrain.train.init_weights import load_pretrained
from nexus_pretrain.train.trainer import Trainer

from .conftest import SFT, small_config


def _fresh(args):
    torch.manual_seed(123)
    return Llama(args)


def test_loads_exactly_the_pretrained_weights(pretrained_run):
    checkpoint = ckpt.latest_checkpoint(pretrained_run)
    args, expected, _ = load_checkpoint_weights(checkpoint)
    for source in (checkpoint, pretrained_run, pretrained_run / "hf"):
        model = _fresh(args)
        load_pretrained(model, source)
        state = model.state_dict()
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected), source


def test_hf_import_can_extend_rope_for_longer_rows(pretrained_run):
    from nexus_pretrain.model.hf import import_hf

    short, longer = import_hf(pretrained_run / "hf"), import_hf(pretrained_run / "hf", max_seq_len=256)
    assert longer.args.max_seq_len == 256 > short.args.max_seq_len
    assert all(torch.equal(a, b) for a, b in zip(short.state_dict().values(), longer.state_dict().values()))
    tokens = torch.arange(short.args.max_seq_len)[None]
    torch.testing.assert_close(short(tokens), longer(tokens))


def test_trainer_starts_from_them_with_a_fresh_optimizer(pretrained_run, tmp_path):
    _, expected, _ = load_checkpoint_weights(ckpt.latest_checkpoint(pretrained_run))
    trainer = Trainer(small_config(tmp_path, *SFT, "trainer.max_steps=2", f"trainer.init_from={pretrained_run}"))
    try:
        state = trainer.model.state_dict()
        assert all(torch.equal(state[k], expected[k]) for k in expected)
        assert trainer.step == 0 and not trainer.optimizer.outer.state
    finally:
        trainer.close()


def test_shape_mismatch_is_a_one_line_error(pretrained_run):
    args, _, _ = load_checkpoint_weights(ckpt.latest_checkpoint(pretrained_run))
    wider = ModelArgs(**{**vars(args), "dim": 32, "n_heads": 2, "ffn_dim": 64})
    with pytest.raises(ValueError, match=r"trainer.init_from=.*: tok_embeddings.weight has shape \(\d+, 64\) there but "
                                         r"\(\d+, 32\) in this model") as info:
        load_pretrained(_fresh(wider), pretrained_run)
    assert "\n" not in str(info.value)
    deeper = ModelArgs(**{**vars(args), "n_layers": args.n_layers + 1})
    with pytest.raises(ValueError, match=r"parameter layers.2.* is in this model but not in the pretrained weights"):
        load_pretrained(_fresh(deeper), pretrained_run)
    with pytest.raises(ValueError, match=r"neither a checkpoint"):
        load_pretrained(_fresh(args), pretrained_run / "checkpoints")

"""Chat-template tokenization: which tokens are trained on, for the default and a tokenizer's own template."""

import copy

import numpy as np
import pytest
import torch

from nexus_pretrain.sft.sampler import IGNORE, SFTExamples
from nexus_pretrain.sft.template import DEFAULT_CHAT_TEMPLATE, choose_template, encode_conversation

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PAIR = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5. The answer is 5."}]


def test_default_template_masks_exactly_the_prompt(tokenizer):
    assert not getattr(tokenizer, "chat_template", None)  # the embedded tokenizer has none
    template = choose_template(tokenizer, "auto")
    assert template == DEFAULT_CHAT_TEMPLATE
    enc = encode_conversation(tokenizer, template, PAIR)
    pieces = [tokenizer.decode([i]) for i in enc.ids]
    assert pieces[:16] == ["<|endoftext|>", "User", ":", " What", " is", " 2", " +", " 3", "?", "\n", "\n",
                           "A", "ss", "ist", "ant", ":"]
    assert enc.response.tolist() == [False] * 16 + [True] * 12
    assert tokenizer.decode(enc.ids[enc.response]) == " 2 + 3 = 5. The answer is 5.<|endoftext|>"


def test_targets_are_the_next_response_tokens_and_padding_is_ignored(tokenizer):
    enc = encode_conversation(tokenizer, DEFAULT_CHAT_TEMPLATE, PAIR)
    examples = SFTExamples([enc.ids], [enc.response], seq_len=40, pad_id=0)
    batch = examples.batch([0])
    n = len(enc.ids)  # 28 tokens: inputs 0..26 predict tokens 1..27
    assert batch.inputs.shape == batch.targets.shape == (1, 40)
    assert batch.inputs[0, :n].tolist() == enc.ids.tolist() and batch.inputs[0, n:].eq(0).all()
    expected = [int(t) if r else IGNORE for t, r in zip(enc.ids[1:], enc.response[1:])] + [IGNORE] * (40 - n + 1)
    assert batch.targets[0].tolist() == expected
    assert (batch.targets != IGNORE).sum() == 12 and batch.domains == ["sft"]
    assert torch.equal(batch.domain_ids, torch.zeros(1, dtype=torch.int64))


def test_own_chat_template_multi_turn_trains_every_assistant_turn(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHATML
    assert choose_template(tok, "auto") == CHATML and choose_template(tok, "default") == DEFAULT_CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": "Goodbye"}]
    enc = encode_conversation(tok, CHATML, messages)
    runs, current = [], []
    for i, r in zip(enc.ids, enc.response):
        if r:
            current.append(int(i))
        elif current:
            runs.append(tok.decode(current))
            current = []
    if current:
        runs.append(tok.decode(current))
    assert runs == ["Hello there<|im_end|>\n", "Goodbye<|im_end|>\n"]


def test_template_errors_are_one_line(tokenizer):
    with pytest.raises(ValueError, match=r"data.sft.template=chat but the tokenizer has no chat template"):
        choose_template(tokenizer, "chat")
    unstable = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}"
    with pytest.raises(ValueError, match=r"prefix by prefix.*data.sft.template=default") as info:
        encode_conversation(tokenizer, unstable, PAIR)
    assert "\n" not in str(info.value)


def test_no_overlap_between_prompt_and_response_tokens(tokenizer):
    enc = encode_conversation(tokenizer, DEFAULT_CHAT_TEMPLATE, [*PAIR, {"role": "user", "content": "And 3 + 4?"},
                                                               {"role": "assistant", "content": "7."}])
    assert tokenizer.decode(enc.ids[enc.response]) == " 2 + 3 = 5. The answer is 5.<|endoftext|> 7.<|endoftext|>"
    assert not enc.response[0] and np.asarray(enc.response).dtype == bool

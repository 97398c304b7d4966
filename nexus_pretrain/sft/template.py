"""Chat-template rendering of a conversation into token ids and a mask of the tokens trained on.

The tokenizer's own chat template is used when it has one; otherwise DEFAULT_CHAT_TEMPLATE, a plain
"User: ... / Assistant: ..." format (below). Assistant turns are found by rendering each conversation
prefix: the characters between ``render(messages[:i], add_generation_prompt=True)`` and
``render(messages[:i + 1])`` are assistant message i (its end-of-turn marker included), and a token is a
response token when its character span overlaps one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

Message = Dict[str, str]

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ 'User: ' + message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)
"""The template of tokenizers without one: ``<bos>[system\\n\\n]User: {prompt}\\n\\nAssistant: {response}<eos>``
(turns repeat). The generation prompt ends at "Assistant:", so the response's leading space is trained."""


@dataclass
class Encoded:
    """Token ids of one conversation and, per token, whether it belongs to an assistant response."""

    ids: np.ndarray  # int64 (n,)
    response: np.ndarray  # bool (n,)


def choose_template(tokenizer: Any, mode: str) -> str:
    """The Jinja chat template to render with: the tokenizer's (auto/chat) or the default one."""
    own = getattr(tokenizer, "chat_template", None)
    if mode == "chat" and not own:
        raise ValueError("data.sft.template=chat but the tokenizer has no chat template; use data.sft.template=auto")
    return own if own and mode in ("auto", "chat") else DEFAULT_CHAT_TEMPLATE


def _render(tokenizer: Any, template: str, messages: Sequence[Message], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def response_spans(tokenizer: Any, template: str, messages: Sequence[Message]) -> Tuple[str, List[Tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    text = _render(tokenizer, template, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _render(tokenizer, template, messages[:i], True)
        upto = _render(tokenizer, template, messages[:i + 1], False)
        if not (text.startswith(start) and text.startswith(upto) and len(upto) >= len(start)):
            raise ValueError("the chat template does not render conversations prefix by prefix (a later turn "
                             "changes earlier text), so responses cannot be located; set data.sft.template=default")
        spans.append((len(start), len(upto)))
    return text, spans


def encode_conversations(tokenizer: Any, template: str, conversations: Sequence[Sequence[Message]]) -> List[Encoded]:
    """Token ids of each rendered conversation and its response mask (special tokens as the template writes them)."""
    rendered = [response_spans(tokenizer, template, messages) for messages in conversations]
    enc = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for (_, spans), ids, offsets in zip(rendered, enc["input_ids"], enc["offset_mapping"]):
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        response = np.zeros(len(ids), dtype=bool)
        for start, end in spans:
            response |= (offsets[:, 0] < end) & (offsets[:, 1] > start)
        out.append(Encoded(np.asarray(ids, dtype=np.int64), response))
    return out


def encode_conversation(tokenizer: Any, template: str, messages: Sequence[Message]) -> Encoded:
    """encode_conversations of one conversation."""
    return encode_conversations(tokenizer, template, [messages])[0]

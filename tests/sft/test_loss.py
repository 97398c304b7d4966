"""Per-row training loss and held-out loss count response tokens only."""

import torch
import torch.nn.functional as F

from nexus_pretrain.evaluation.heldout import stream_loss
from nexus_pretrain.model.llama import Llama, ModelArgs, lm_loss, sequence_losses
from nexus_pretrain.sft.sampler import IGNORE, SFTExamples
from nexus_pretrain.sft.template import DEFAULT_CHAT_TEMPLATE, encode_conversation


def test_sequence_losses_average_over_unmasked_targets_only():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    targets = torch.tensor([[1, 2, 3, 4, 5], [IGNORE, IGNORE, 3, 6, IGNORE], [IGNORE] * 5])
    log_probs = F.log_softmax(logits, dim=-1)
    row0 = -sum(log_probs[0, j, targets[0, j]] for j in range(5)) / 5
    row1 = -(log_probs[1, 2, 3] + log_probs[1, 3, 6]) / 2
    losses = sequence_losses(logits, targets)
    torch.testing.assert_close(losses, torch.stack([row0, row1, torch.tensor(0.0)]))
    # unmasked rows are exactly the plain per-row mean (pretraining is unchanged)
    assert torch.equal(sequence_losses(logits[:1], targets[:1]),
                       F.cross_entropy(logits[:1].flatten(0, 1), targets[:1].flatten(), reduction="none").view(1, 5).mean(1))


def _examples(tokenizer, seq_len=48):
    pairs = [("What is 2 + 3?", "2 + 3 = 5. The answer is 5."), ("Name a colour.", "Blue."),
             ("Count to three.", "One, two, three.")]
    encoded = [encode_conversation(tokenizer, DEFAULT_CHAT_TEMPLATE,
                                   [{"role": "user", "content": p}, {"role": "assistant", "content": r}])
               for p, r in pairs]
    return SFTExamples([e.ids for e in encoded], [e.response for e in encoded], seq_len, tokenizer.eos_token_id), encoded


def test_row_loss_is_the_mean_nll_of_the_response_tokens(tokenizer):
    examples, encoded = _examples(tokenizer)
    torch.manual_seed(0)
    model = Llama(ModelArgs(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=len(tokenizer) + 64,
                            max_seq_len=48)).eval()
    batch = examples.batch([0, 1, 2])
    with torch.no_grad():
        losses = sequence_losses(model(batch.inputs), batch.targets)
        for row, enc in enumerate(encoded):  # by hand: the model on the unpadded example, response targets only
            ids = torch.as_tensor(enc.ids)
            log_probs = F.log_softmax(model(ids[None, :-1])[0].float(), dim=-1)
            nll = [-log_probs[j, ids[j + 1]] for j in range(len(ids) - 1) if enc.response[j + 1]]
            torch.testing.assert_close(losses[row], torch.stack(nll).mean(), rtol=1e-5, atol=1e-5)
        # the held-out loss is the mean over all response tokens of the set (token-weighted across examples)
        total = sum(float(lm_loss(model(examples.batch([i]).inputs), examples.batch([i]).targets)) *
                    int((examples.batch([i]).targets != IGNORE).sum()) for i in range(3))
        count = sum(int((examples.batch([i]).targets != IGNORE).sum()) for i in range(3))
    held_out = stream_loss(model, examples, 48, 3, 2, torch.device("cpu"))
    assert abs(held_out - total / count) < 1e-5

"""nexus_pretrain.bench.gemms: the GEMM inventory behind bench_matmul.py --preset is exactly the 6N of MFU."""

import pytest
import torch

from nexus_pretrain.bench.gemms import linear_gemms, model_gemms
from nexus_pretrain.model.llama import Llama, ModelArgs, count_parameters
from nexus_pretrain.model.presets import PRESETS


@pytest.mark.parametrize("preset", ["tiny", "llama_130m", "llama_3b"])  # llama_3b: grouped-query attention
def test_gemm_flops_are_6n_per_token_without_the_norm_weights(preset):
    args = ModelArgs(**PRESETS[preset], vocab_size=32000, max_seq_len=2048)
    with torch.device("meta"):
        n = count_parameters(Llama(args))
    norm_weights = (2 * args.n_layers + 1) * args.dim
    tokens = 4096
    assert sum(g.flops for g in model_gemms(args, tokens)) == 6 * tokens * (n - norm_weights)


def test_linear_gemms_are_forward_input_and_weight_gradients():
    fwd, dgrad, wgrad = linear_gemms("w2", in_features=6, out_features=4, tokens=10, count=3)
    assert (fwd.m, fwd.k, fwd.n, fwd.transpose_b) == (10, 6, 4, True)       # X (10, 6) @ Wᵀ, W stored (4, 6)
    assert (dgrad.m, dgrad.k, dgrad.n) == (10, 4, 6)                        # dY (10, 4) @ W (4, 6)
    assert (wgrad.m, wgrad.k, wgrad.n, wgrad.transpose_a) == (4, 10, 6, True)  # dYᵀ @ X, dY stored (10, 4)
    assert fwd.flops == dgrad.flops == wgrad.flops == 2 * 10 * 6 * 4 * 3

"""FP8 weights kept across micro-batches (``model.float8_cache_weights``).

With tensorwise scaling each converted layer casts its fp32 weight to FP8 in every forward: a pass for its
maximum and one for the cast, per micro-batch, although the weights change only when the optimizer (or
Nexus's inner step) writes them. Here the FP8 weight is cast once per change instead: before each forward
of the model, every converted layer whose weight changed since its last cast (its version counter or
storage moved) is cast again, and the layers' compiled forwards take the kept FP8 weight as an input;
gradients still flow to the fp32 weight. With gradient accumulation over N micro-batches that is one cast
per optimizer step instead of N; where the weights change after every micro-batch (Nexus with an inner step
per micro-batch) it is the same number of casts, made outside the layers' compiled regions.

TransformerEngine does this (its ``is_first_microbatch``); torchao's float8 training does not, so it is
written here on top of torchao's own cast and tensor. The FP8 values are those the layer's own cast gives,
so results are unchanged. Only for one device: FSDP2 gathers each weight anew for every forward. Weights
changed through ``.data`` (which bypasses the version counter) are not seen; nothing in this package does
that.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from nexus_pretrain.model.float8 import single_cast

CACHED = "float8_weight_t"
"""The attribute of a converted layer that holds its kept FP8 weight (transposed, as torchao multiplies it)."""


class _KeptWeight(torch.autograd.Function):
    """The kept FP8 weight in the autograd graph of the fp32 weight: forward hands a fresh FP8 tensor on
    the kept data and scale, backward passes its gradient to the weight unchanged (as torchao's cast does)."""

    @staticmethod
    def forward(ctx, weight_t: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        from torchao.float8.float8_training_tensor import Float8TrainingTensor  # noqa: PLC0415 (optional: torchao)

        return Float8TrainingTensor(kept._data, kept._scale, kept._orig_dtype, kept._linear_mm_config,
                                    kept._gemm_input_role, kept._axiswise_dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> Tuple[torch.Tensor, None]:
        return grad, None


def kept_weight(weight_t: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """``kept`` (the FP8 cast of ``weight_t``) standing in for ``weight_t`` in a matmul, its gradient going
    to ``weight_t``."""
    return _KeptWeight.apply(weight_t, kept)


def _cast_bits(weight: torch.Tensor, target_dtype: torch.dtype, linear_mm_config,
               round_scales_to_power_of_2: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The FP8 bits and scale of ``weight`` as torchao's tensorwise cast gives them (plain tensors, so that
    a compiled cast hands back exactly the layout asked for)."""
    from torchao.float8.float8_scaling_utils import hp_tensor_to_float8_dynamic  # noqa: PLC0415 (optional: torchao)
    from torchao.float8.float8_training_tensor import GemmInputRole  # noqa: PLC0415

    fp8 = hp_tensor_to_float8_dynamic(weight, target_dtype, linear_mm_config, gemm_input_role=GemmInputRole.WEIGHT,
                                      round_scales_to_power_of_2=round_scales_to_power_of_2)
    return fp8._data, fp8._scale


class Float8WeightCache:
    """The kept FP8 weights of a model's converted layers, recast before a forward where a weight changed."""

    def __init__(self, layers: List[nn.Module], compile: bool = False):
        self.layers = layers
        self._bits = torch.compile(_cast_bits, dynamic=False) if compile else _cast_bits
        self._seen: List[Optional[Tuple[int, int]]] = [None] * len(layers)
        self.casts = 0
        """How many layer weights were cast (what the tests count)."""

    def refresh(self) -> None:
        """Cast every layer weight that changed since its last cast (every one the first time). A layer set
        to cast otherwise for the moment (bf16 evaluations) is left to cast at its next FP8 forward."""
        from torchao.float8.float8_training_tensor import Float8TrainingTensor, GemmInputRole  # noqa: PLC0415

        with torch.no_grad(), torch.inference_mode(False):
            for i, layer in enumerate(self.layers):
                weight = layer.weight
                seen = (weight._version, weight.data_ptr())
                cast = single_cast(layer.config, "weight")
                if seen == self._seen[i] or cast is None:
                    continue
                # Cast row-major and kept transposed: the same values as casting weight.t() (one scale for
                # the tensor), in the layout torchao's own cast of weight.t() gives.
                data, scale = self._bits(weight, cast.target_dtype, layer.linear_mm_config,
                                         layer.config.round_scales_to_power_of_2)
                setattr(layer, CACHED, Float8TrainingTensor(data.t(), scale, weight.dtype, layer.linear_mm_config,
                                                            GemmInputRole.WEIGHT, None))
                self._seen[i] = seen
                self.casts += 1


def keep_weights(model: nn.Module, layers: List[nn.Module], compile: bool = False) -> Float8WeightCache:
    """Keep the FP8 weights of ``layers`` (converted layers of ``model`` with tensorwise scaling), recast
    before each forward of ``model`` where they changed; ``compile`` compiles the cast (one pass over the
    weight for its maximum, one for the cast, as in the layers' own compiled forwards)."""
    cache = Float8WeightCache(layers, compile)
    model.register_forward_pre_hook(lambda module, args: cache.refresh())
    model.float8_weight_cache = cache
    return cache

"""FP8 training of the transformer blocks' linear layers and the output head through torchao's float8
training (``model.float8``): the matmuls of forward and backward run in FP8 with dynamic scaling, the
weights, their gradients and the optimizer (Nexus's fp32 master weights and inner step included) are
unchanged.

Only layers large enough to gain convert (``model.float8_min_dim``); the head's matmul with
``model.float8_head``. The backends call :func:`apply_float8` after placing the model and before
compiling or sharding it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional

if TYPE_CHECKING:  # config validation reads the constants below without paying for importing torch
    import torch
    from torch import nn

FLOAT8_MODES = ("false", "true", "auto")
"""model.float8's values: never, always (on a GPU that lacks FP8 it is an error), on GPUs with FP8."""

FLOAT8_RECIPES = ("tensorwise", "rowwise")
"""torchao's scaling recipes: one scale per tensor (fastest), or one per row (finer, slower)."""

DEFAULT_MIN_DIM = 2048
"""model.float8_min_dim=null: a linear layer converts when its input and output sizes are both at least
this. On an H100 (docs/performance-fp8.md) each 1B layer (smallest size 2048) gained alone and 1B and 3B
gained as wholes, while 520M with its layers of smallest size 1280 converted ran 4% slower."""

FLOAT8_EVALS = ("fp8", "bf16")
"""model.float8_eval's values: an FP8 run evaluates through its FP8 layers, or through bf16 matmuls."""

HEAD = "output"
"""The output head's name: its matmul converts with model.float8_head (see docs/performance-fp8.md)."""

DEFAULT_HEAD = True
"""model.float8_head's default: the output head's matmul in FP8 too (when its sizes pass the threshold). Alone
it gained 1.38x at 3B on an H200; with DEFAULT_FAST_ACCUM it took 1B from 1.148x to 1.194x bf16's speed
on an H100, and a 1B 500-step run with both stayed within 0.5% of bf16's loss (docs/performance-fp8.md)."""

DEFAULT_FAST_ACCUM = True
"""model.float8_fast_accum's default: the backward FP8 matmuls accumulate in the fast mode, as torchao's
forward does (see DEFAULT_HEAD for what the two measured together)."""


def float8_mode(value: Any) -> str:
    """model.float8 as one of FLOAT8_MODES (Hydra may hand a YAML boolean or its string form)."""
    return str(value).lower()


def recorded_mode(mode: Any, converted: List[str]) -> str:
    """model.float8 as a run records it: auto becomes what it did here (true when any layer converted,
    else false), so that config.yaml says whether the run trained in FP8, sweeps tell FP8 runs from bf16
    ones, and resuming on a GPU where auto means otherwise is refused instead of silently changing
    precision; true and false stay as given."""
    mode = float8_mode(mode)
    if mode != "auto":
        return mode
    return "true" if converted else "false"


def fp8_capable(device: torch.device) -> bool:
    """Whether ``device`` is a GPU with FP8 matrix units (compute capability 8.9: Ada, Hopper, later)."""
    import torch  # noqa: PLC0415 (heavy: keeps the config import torch-free)

    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def torchao_available() -> bool:
    """Whether torchao's float8 training can be imported (the ``gpu`` extra installs it)."""
    try:
        import torchao.float8  # noqa: F401, PLC0415 (optional: torchao)
    except ImportError:
        return False
    return True


def wants_float8(mode: str, device: torch.device) -> bool:
    """Whether model.float8=``mode`` converts the model on ``device``: auto only on an FP8 GPU with
    torchao installed (warning when torchao is missing there); true everywhere but on a GPU without
    FP8 (ValueError). On CPU, true emulates FP8 (see convert)."""
    import torch  # noqa: PLC0415 (heavy: keeps the config import torch-free)

    mode = float8_mode(mode)
    if mode not in FLOAT8_MODES:
        raise ValueError(f"model.float8={mode!r} is not one of {', '.join(FLOAT8_MODES)}")
    if mode == "false":
        return False
    if mode == "auto":
        if fp8_capable(device) and not torchao_available():
            warnings.warn("model.float8=auto: this GPU has FP8 but torchao is not installed, so training stays in "
                          "bf16; pip install 'nexus_pretrain[gpu]'", stacklevel=2)
            return False
        return fp8_capable(device)
    if device.type == "cuda" and not fp8_capable(device):
        raise ValueError(f"model.float8=true but {torch.cuda.get_device_name(device)} has no FP8 matmuls (compute "
                         "capability 8.9 or newer needed); use model.float8=auto or false")
    if not torchao_available():
        raise ValueError("model.float8=true needs torchao; pip install 'nexus_pretrain[gpu]' (or torchao==0.18.0)")
    return True


def converts(module: nn.Module, fqn: str, min_dim: float, head: bool = False) -> bool:
    """Whether a module of the model computes in FP8: a linear layer (the output head only with
    ``head``), both sizes multiples of 16 (FP8 matmuls need it) and at least ``min_dim``."""
    from torch import nn  # noqa: PLC0415 (heavy: keeps the config import torch-free)

    if not isinstance(module, nn.Linear) or (fqn == HEAD and not head):
        return False
    k, n = module.in_features, module.out_features
    return k % 16 == 0 and n % 16 == 0 and min(k, n) >= min_dim


def float8_config(recipe: str, fsdp_all_gather: bool = False, emulate: bool = False, fast_accum: bool = False):
    """torchao's Float8LinearConfig of a recipe; ``fsdp_all_gather`` has FSDP2 gather the weights in
    FP8 (tensorwise only: rowwise scales cannot be computed on shards); ``emulate`` rounds the operands
    to FP8 as on a GPU but multiplies them in high precision; ``fast_accum`` has the backward matmuls
    accumulate in the fast mode too (torchao's recipes use it for the forward only)."""
    from torchao.float8 import Float8GemmConfig, Float8LinearConfig  # noqa: PLC0415 (optional: torchao)

    if recipe not in FLOAT8_RECIPES:
        raise ValueError(f"model.float8_recipe={recipe!r} is not one of {', '.join(FLOAT8_RECIPES)}")
    config = Float8LinearConfig.from_recipe_name(recipe)
    backward = {}
    if fast_accum:
        fast = Float8GemmConfig(use_fast_accum=True)
        backward = {"gemm_config_grad_input": fast, "gemm_config_grad_weight": fast}
    return dataclasses.replace(config, emulate=emulate, **backward,
                               enable_fsdp_float8_all_gather=fsdp_all_gather and recipe == "tensorwise")


CAST_ONCE = True
"""Whether cast_once casts; False leaves each input and weight to torchao, which casts them again in
backward (nexus-bench --float8-cast-twice sets it, to measure what casting once gives)."""


@contextlib.contextmanager
def casts(once: bool) -> Iterator[None]:
    """CAST_ONCE set to ``once`` within it (FP8 layers traced or run there see it), restored after."""
    global CAST_ONCE
    previous, CAST_ONCE = CAST_ONCE, once
    try:
        yield
    finally:
        CAST_ONCE = previous


def cast_once(x: torch.Tensor, role: str, linear_mm_config, config) -> torch.Tensor:
    """A converted layer's ``role`` operand ("input", or "weight" transposed as torchao multiplies it)
    cast to FP8 as torchao casts it for the forward matmul, when the backward matmul that takes it again
    takes the same cast (tensorwise: one scale for the whole tensor); otherwise ``x`` unchanged (so also
    when it is FP8 already, as FSDP2's FP8 all-gather hands the weight).

    Handed a bf16 input or fp32 weight, torchao saves it for backward and there takes its maximum and
    casts it again, for the weight gradient (the input, after recomputing SwiGLU for the down projection)
    or the input gradient (the weight): a full extra pass over every converted layer's input per
    micro-batch, and in eager runs two over its fp32 weight (compiled graphs merge the weight's two
    identical casts). Handed the FP8 tensor, it saves that and uses it in the other layout. The FP8
    values, and so every result, are the same either way."""
    from torchao.float8.distributed_utils import tensor_already_casted_to_fp8  # noqa: PLC0415 (optional: torchao)
    from torchao.float8.float8_scaling_utils import hp_tensor_to_float8_dynamic  # noqa: PLC0415
    from torchao.float8.float8_training_tensor import GemmInputRole  # noqa: PLC0415

    cast = single_cast(config, role)
    if not CAST_ONCE or cast is None or tensor_already_casted_to_fp8(x):
        return x
    gemm_role = GemmInputRole.INPUT if role == "input" else GemmInputRole.WEIGHT
    return hp_tensor_to_float8_dynamic(x, cast.target_dtype, linear_mm_config, gemm_input_role=gemm_role,
                                       round_scales_to_power_of_2=config.round_scales_to_power_of_2)


def single_cast(config, role: str):
    """torchao's CastConfig of a layer's ``role`` operand ("input" or "weight") under ``config`` when one
    FP8 cast serves both matmuls that take it (dynamic tensorwise scaling, the same for both); else None."""
    from torchao.float8.config import ScalingGranularity, ScalingType  # noqa: PLC0415 (optional: torchao)

    if role == "input":
        cast, again = config.cast_config_input, config.cast_config_input_for_grad_weight
    else:
        cast, again = config.cast_config_weight, config.cast_config_weight_for_grad_input
    tensorwise = cast.scaling_type is ScalingType.DYNAMIC and cast.scaling_granularity is ScalingGranularity.TENSORWISE
    return cast if tensorwise and again == cast else None


def float8_matmul(x: torch.Tensor, weight: torch.Tensor, linear_mm_config, config,
                  kept_weight_t: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ weight.T`` as torchao's Float8Linear computes it under ``config``, with the input and the
    weight each cast to FP8 once (cast_once), or the weight's kept FP8 cast ``kept_weight_t`` used where
    one cast serves (model/float8_weights.py)."""
    from torchao.float8.float8_linear import matmul_with_hp_or_float8_args  # noqa: PLC0415 (optional: torchao)

    from nexus_pretrain.model.float8_weights import kept_weight  # noqa: PLC0415 (heavy: keeps the config import torch-free)
    from nexus_pretrain.model.llama import to_autocast_dtype  # noqa: PLC0415 (heavy, see above)

    x = cast_once(to_autocast_dtype(x), "input", linear_mm_config, config)
    if kept_weight_t is not None and single_cast(config, "weight") is not None:
        weight_t = kept_weight(weight.t(), kept_weight_t)
    else:
        weight_t = cast_once(weight.t(), "weight", linear_mm_config, config)
    return matmul_with_hp_or_float8_args.apply(x, weight_t, linear_mm_config, config)


def _float8_classes():
    """(Float8LinearCastOnce, Float8QKVProjection), defined on first use so that importing this module
    needs no torchao."""
    global _CLASSES
    if _CLASSES is None:
        import torch  # noqa: PLC0415 (heavy: keeps the config import torch-free)
        from torchao.float8.float8_linear import Float8Linear  # noqa: PLC0415 (optional: torchao)

        from nexus_pretrain.model.float8_weights import CACHED  # noqa: PLC0415 (heavy, see above)

        class Float8LinearCastOnce(Float8Linear):
            """torchao's Float8Linear, with its input and weight each cast to FP8 once per forward (cast_once)."""

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                kept = getattr(self, CACHED, None)  # model.float8_cache_weights
                output = float8_matmul(x, self.weight, self.linear_mm_config, self.config, kept)
                return output if self.bias is None else output + self.bias.to(output.dtype)

        class Float8QKVProjection(Float8LinearCastOnce):
            """model.llama.QKVProjection in FP8: one FP8 matmul on the stacked (q; k; v) weight, then
            split, so the input is cast to FP8 once and the matmul is as wide as the three together."""

            sizes: List[int]

            def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
                return list(super().forward(x).split(self.sizes, dim=-1))

            @classmethod
            def from_float(cls, mod, config=None):
                new = super().from_float(mod, config=config)
                new.sizes = list(mod.sizes)
                return new

        _CLASSES = Float8LinearCastOnce, Float8QKVProjection
    return _CLASSES


_CLASSES = None


def float8_head_linear(config) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The output head's matmul ``(x, weight) -> x @ weight.T`` in FP8 under torchao's ``config``, as
    its Float8Linear computes it, for Llama.head_linear: the head keeps its plain weight, so the fused
    norm-head-loss region, FSDP2's handling of the root and checkpoints stay as they are."""
    import torch  # noqa: PLC0415 (heavy: keeps the config import torch-free)
    from torchao.float8.float8_linear import Float8Linear  # noqa: PLC0415 (optional: torchao)

    with torch.device("meta"):
        mm_config = Float8Linear(16, 16, bias=False, config=config).linear_mm_config

    def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return float8_matmul(x, weight, mm_config, config)

    linear.float8 = True  # what float8_layers reads
    return linear


def convert(model: nn.Module, recipe: str = "tensorwise", min_dim: Optional[float] = None,
            fsdp_all_gather: bool = False, emulate: bool = False, fast_accum: Optional[bool] = None,
            head: Optional[bool] = None) -> List[str]:
    """Swap the model's qualifying linear layers (see converts) for torchao's FP8 training linears, in
    place, and with ``head`` the output head's matmul (a Llama's head_linear); ``min_dim``, ``head`` and
    ``fast_accum`` None take DEFAULT_MIN_DIM, DEFAULT_HEAD and DEFAULT_FAST_ACCUM; for fsdp_all_gather,
    emulate and fast_accum see float8_config. Returns the converted modules' names."""
    from torchao.float8 import convert_to_float8_training  # noqa: PLC0415 (optional: torchao)

    from nexus_pretrain.model.llama import QKVProjection  # noqa: PLC0415 (heavy: keeps the config import torch-free)

    min_dim = DEFAULT_MIN_DIM if min_dim is None else min_dim
    fast_accum = DEFAULT_FAST_ACCUM if fast_accum is None else fast_accum
    config = float8_config(recipe, fsdp_all_gather, emulate, fast_accum)
    head = (DEFAULT_HEAD if head is None else head) and hasattr(model, "head_linear")
    chosen = [name for name, module in model.named_modules() if converts(module, name, min_dim, head)]
    qkv = [name for name in chosen if isinstance(model.get_submodule(name), QKVProjection)]
    plain = set(chosen) - set(qkv) - {HEAD}
    # torchao's conversion builds the layers (and patches Inductor's min/max code generation against a
    # Triton miscompile of FP8 stores); Float8LinearCastOnce, a subclass without state of its own, only
    # changes their forward.
    convert_to_float8_training(model, module_filter_fn=lambda module, fqn: fqn in plain, config=config)
    cast_once, qkv_class = _float8_classes()
    for name in plain:
        model.get_submodule(name).__class__ = cast_once
    for name in qkv:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, qkv_class.from_float(getattr(owner, child), config=config))
    if HEAD in chosen:
        model.head_linear = float8_head_linear(config)
    return chosen


def apply_float8(model: nn.Module, device: torch.device, sharded: bool = False,
                 compile: bool = False) -> List[str]:
    """Convert a Llama (on ``device``, not yet compiled, and to be sharded by FSDP2 when ``sharded``: its
    weights then gathered in FP8 where the recipe allows) as its model.float8, float8_recipe,
    float8_min_dim, float8_fast_accum and float8_head ask, emulated off the GPU (PyTorch's CPU FP8 matmuls
    are ~200x slower than emulation), keeping the block layers' FP8 weights as float8_cache_weights asks
    (their casts compiled with ``compile``); returns the converted layers' names ([] when it stays bf16)."""
    from nexus_pretrain.model.float8_weights import keep_weights  # noqa: PLC0415 (heavy: keeps the config import torch-free)

    args = getattr(model, "args", None)  # a Llama's ModelArgs; other modules stay as they are
    if args is None or not wants_float8(args.float8, device):
        return []
    # torchao casts FP8-gathered weights whatever the layer's config says: bf16 evaluations need bf16 gathers
    fsdp_all_gather = sharded and args.float8_eval == "fp8"
    names = convert(model, args.float8_recipe, args.float8_min_dim, fsdp_all_gather=fsdp_all_gather,
                    emulate=device.type != "cuda", fast_accum=args.float8_fast_accum, head=args.float8_head)
    if keeps_weights(args.float8_cache_weights, args.float8_recipe, sharded):
        keep_weights(model, [model.get_submodule(name) for name in names if name != HEAD], compile)
    return names


def keeps_weights(mode: str, recipe: str, sharded: bool) -> bool:
    """Whether model.float8_cache_weights=``mode`` keeps FP8 weights across forwards: true always (the
    config checks refuse it where it cannot serve), auto where it can (unsharded, tensorwise)."""
    mode = float8_mode(mode)
    return mode == "true" or (mode == "auto" and not sharded and recipe == "tensorwise")


def _bf16_config():
    """torchao's Float8LinearConfig with every cast disabled: the layer multiplies in its input's dtype
    (bf16 under autocast), exactly as the plain linear layer it replaced."""
    from torchao.float8 import CastConfig, Float8LinearConfig, ScalingType  # noqa: PLC0415 (optional: torchao)

    off = CastConfig(scaling_type=ScalingType.DISABLED)
    return Float8LinearConfig(cast_config_input=off, cast_config_weight=off, cast_config_grad_output=off)


@contextlib.contextmanager
def evaluation_forward(model: nn.Module) -> Iterator[None]:
    """Within it, a Llama with model.float8_eval=bf16 computes its FP8 layers and head with bf16 matmuls
    (the same weights); any other model is left as it is."""
    args = getattr(model, "args", None)
    layers = float8_layers(model) if args is not None and args.float8_eval == "bf16" else []
    if not layers:
        yield
        return
    from torch.nn import functional as F  # noqa: PLC0415 (heavy: keeps the config import torch-free)

    modules = [model.get_submodule(name) for name in layers if name != HEAD]
    configs, head_linear = [module.config for module in modules], model.head_linear
    bf16 = _bf16_config()
    try:
        for module in modules:
            module.config = bf16
        if HEAD in layers:
            model.head_linear = F.linear
        yield
    finally:
        for module, config in zip(modules, configs):
            module.config = config
        model.head_linear = head_linear


def float8_layers(model: nn.Module) -> List[str]:
    """Names of the model's FP8 linear layers (the output head's name too when its matmul is FP8)."""
    if not torchao_available():
        return []
    from torchao.float8.float8_linear import Float8Linear  # noqa: PLC0415 (optional: torchao)

    names = [name for name, module in model.named_modules() if isinstance(module, Float8Linear)]
    return names + [HEAD] if getattr(getattr(model, "head_linear", None), "float8", False) else names

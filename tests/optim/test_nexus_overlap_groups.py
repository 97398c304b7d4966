"""The overlapped inner step's grouping: every parameter in exactly one group, in forward order."""

from types import SimpleNamespace

import torch

from nexus_pretrain.config import OptimConfig
from nexus_pretrain.model.llama import Llama
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.optim.build import build_optimizer, forward_regions
from nexus_pretrain.optim.inner_overlap import parameter_groups


def test_groups_cover_each_parameter_once_root_first():
    model = Llama(resolve_model_args(SimpleNamespace(preset="tiny"), vocab_size=300, seq_len=32))
    params = list(model.parameters())
    root, regions = forward_regions(model)
    groups = parameter_groups(params, root, regions)
    assert len(groups) == 1 + len(model.layers)
    assert sorted(i for g in groups for i in g) == list(range(len(params)))
    names = [n for n, _ in model.named_parameters()]
    assert {names[i].split(".")[0] for i in groups[0]} == {"tok_embeddings", "norm", "output"}
    for layer, group in enumerate(groups[1:]):
        assert all(names[i].startswith(f"layers.{layer}.") for i in group) and group


def test_models_without_layers_and_cpu_runs_use_the_inline_step():
    assert forward_regions(torch.nn.Linear(3, 3)) is None
    model = Llama(resolve_model_args(SimpleNamespace(preset="tiny"), vocab_size=300, seq_len=32))
    assert build_optimizer(OptimConfig(name="nexus"), model)._overlap is None  # CPU: no side stream

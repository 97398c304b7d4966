"""Two CPU processes (gloo), FSDP2-sharded parameters: Nexus equals the single-process run on the full batch."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch.distributed as dist

WORKER = textwrap.dedent(
    """
    import copy, json, sys
    import torch, torch.distributed as dist
    from torch import nn
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from nexus_pretrain.config import OptimConfig
    from nexus_pretrain.optim import Nexus
    from nexus_pretrain.optim.build import build_outer
    from nexus_pretrain.optim.normalized import global_norm

    dist.init_process_group("gloo")
    rank, K, results = dist.get_rank(), 3, {}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(6, 20)
            self.mid = nn.Linear(20, 15)  # 15 rows: uneven shards over 2 ranks
            self.output = nn.Linear(15, 3)

        def forward(self, x):
            return self.output(torch.tanh(self.mid(torch.tanh(self.hidden(x)))))

    for outer in ("adamw", "muon"):
        torch.manual_seed(0)
        ref = Net().double()
        model = copy.deepcopy(ref)
        for layer in (model.hidden, model.mid, model.output):
            fully_shard(layer)
        fully_shard(model)
        assert all(isinstance(p, DTensor) for p in model.parameters())
        cfg = OptimConfig(name="nexus", outer=outer, lr=1e-2, weight_decay=0.1)
        opt = Nexus(build_outer(cfg, model, outer), 0.05, max_grad_norm=0.08)
        ref_opt = Nexus(build_outer(cfg, ref, outer), 0.05, max_grad_norm=0.08)
        gen = torch.Generator().manual_seed(1)
        metrics = []
        for step in range(3):
            for _ in range(K):
                x = torch.randn(8, 6, generator=gen, dtype=torch.float64)
                y = torch.randn(8, 3, generator=gen, dtype=torch.float64)
                # Each rank holds half of the micro-batch; FSDP2 averages the gradients across ranks.
                (nn.functional.mse_loss(model(x.chunk(2)[rank]), y.chunk(2)[rank]) / K).backward()
                (nn.functional.mse_loss(ref(x), y) / K).backward()
                norms = [float(global_norm([p.grad for p in model.parameters()])),
                         float(torch.sqrt(sum(p.grad.to_local().pow(2).sum() for p in model.parameters()))),
                         float(global_norm([p.grad for p in ref.parameters()]))]
                opt.micro_step()
                ref_opt.micro_step()
            got, want = opt.step(), ref_opt.step()
            opt.zero_grad()
            ref_opt.zero_grad()
            metrics.append({k: [float(got[k]), float(want[k])] for k in got})
        diff = max((p.full_tensor() - q).abs().max().item() for p, q in zip(model.parameters(), ref.parameters()))
        results[outer] = {"param_diff": diff, "metrics": metrics, "norms": norms}
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()
    """
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")
def test_fsdp2_two_ranks_match_single_process(tmp_path):
    script, out = tmp_path / "worker.py", tmp_path / "result.json"
    script.write_text(WORKER)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2",
               OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, str(script), str(out)], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=90)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-4000:]
    results = json.loads(out.read_text())
    for outer, res in results.items():
        assert res["param_diff"] < 1e-10, outer
        for step in res["metrics"]:
            for name, (got, want) in step.items():
                assert abs(got - want) <= 1e-10 * max(1.0, abs(want)), (outer, name, got, want)
        sharded, local_shard, single = res["norms"]  # of the last micro-batch gradient
        assert abs(sharded - single) <= 1e-12 * single
        assert local_shard < 0.99 * single  # the global norm is a cross-rank reduction, not rank 0's shard
        assert res["metrics"][0]["grad_norm"][1] > 0.08  # clipping was active

"""nexus-bench's memory census: live blocks of an allocator snapshot grouped by where they came from."""

from nexus_pretrain.bench.memory import allocation_site, live_bytes_by_site

MIB = 2**20


def frames(*where):
    return [{"filename": f, "line": line, "name": name} for f, line, name in where]


OPTIMIZER = frames(("/usr/lib/torch/optim/adamw.py", 10, "_init_group"),
                   ("/src/nexus_pretrain/optim/nexus.py", 219, "step"))
MODEL = frames(("/src/nexus_pretrain/model/llama.py", 115, "forward"))


def snapshot():
    blocks = [
        {"size": 64 * MIB, "state": "active_allocated", "frames": OPTIMIZER},
        {"size": 64 * MIB, "state": "active_allocated", "frames": OPTIMIZER},
        {"size": 96 * MIB, "state": "active_allocated", "frames": MODEL},
        {"size": 32 * MIB, "state": "active_pending_free", "frames": MODEL},
        {"size": 500 * MIB, "state": "inactive", "frames": MODEL},  # cached, not live
        {"size": 16 * MIB, "state": "active_allocated"},  # allocated before recording started
    ]
    return {"segments": [{"blocks": blocks[:3]}, {"blocks": blocks[3:]}]}


def test_live_blocks_grouped_by_our_innermost_frame_largest_first():
    assert live_bytes_by_site(snapshot()) == [
        (128 * MIB, 2, "nexus_pretrain/optim/nexus.py:219 step"),
        (96 * MIB, 1, "nexus_pretrain/model/llama.py:115 forward"),
        (32 * MIB, 1, "[active_pending_free] nexus_pretrain/model/llama.py:115 forward"),
        (16 * MIB, 1, "blocks of 16.0 MiB (no stack recorded)"),
    ]
    assert len(live_bytes_by_site(snapshot(), top=2)) == 2


def test_site_outside_our_code_is_the_innermost_frame():
    block = {"size": 1, "state": "active_allocated", "frames": frames(("/usr/lib/torch/x.py", 3, "f"), ("/y.py", 1, "g"))}
    assert allocation_site(block) == "/usr/lib/torch/x.py:3 f"

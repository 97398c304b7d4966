"""What holds GPU memory: the live blocks of a CUDA caching-allocator snapshot, grouped by the code that
allocated them when torch.cuda.memory._record_memory_history was on, else by block size. Blocks freed
by the program but still awaiting another stream's work (state active_pending_free) are listed apart."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Tuple

OWN_CODE = "nexus_pretrain"


def allocation_site(block: Dict[str, Any]) -> str:
    """Where a block was allocated: the innermost frame in our code (else the innermost frame) as
    "file:line function"; without recorded frames, its size. Prefixed by a state other than allocated."""
    state = block.get("state", "")
    prefix = "" if state == "active_allocated" else f"[{state}] "
    frames = block.get("frames") or []
    if not frames:
        return f"{prefix}blocks of {block['size'] / 2**20:.1f} MiB (no stack recorded)"
    frame = next((f for f in frames if OWN_CODE in f.get("filename", "")), frames[0])
    path = frame.get("filename", "?")
    if OWN_CODE in path:
        path = path[path.rindex(OWN_CODE):]
    return f"{prefix}{path}:{frame.get('line', '?')} {frame.get('name', '?')}"


def live_bytes_by_site(snapshot: Dict[str, Any], top: int = 10) -> List[Tuple[int, int, str]]:
    """(bytes, blocks, site) of the live blocks in a torch.cuda.memory._snapshot(), largest first, the
    top ``top`` sites (see allocation_site)."""
    totals: Dict[str, List[int]] = defaultdict(lambda: [0, 0])
    for segment in snapshot.get("segments", []):
        for block in segment.get("blocks", []):
            if block.get("state", "").startswith("active"):
                entry = totals[allocation_site(block)]
                entry[0] += block["size"]
                entry[1] += 1
    ranked = sorted(((size, count, site) for site, (size, count) in totals.items()), reverse=True)
    return ranked[:top]

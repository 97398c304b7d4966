"""Global gradient norm accumulated during backward, so the inner step need not read every
gradient again afterwards.

Each parameter's norm is taken by a post-accumulate-grad hook as soon as autograd finishes its
gradient; on CUDA the norm kernels run on a side stream and overlap the rest of the backward pass.
Hand-written because no library exposes a backward-overlapped global norm; torch's
``get_total_norm`` reads all gradients after backward.
"""

from __future__ import annotations

from typing import List, Optional

import torch


class BackwardGradNorm:
    """Per-parameter gradient norms written by hooks; ``total()`` is their global L2 norm.

    Only for plain (non-DTensor) parameters: sharded gradients need a cross-rank reduction, which
    ``nexus.global_norm`` does after backward.
    """

    def __init__(self, params: List[torch.Tensor]):
        self.params = params
        device = params[0].device
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
        self._norms = torch.zeros(len(params), dtype=dtype, device=device)
        self._stream: Optional[torch.cuda.Stream] = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._handles = [p.register_post_accumulate_grad_hook(self._hook(i)) for i, p in enumerate(params)]

    def _hook(self, index: int):
        def record_norm(param: torch.Tensor) -> None:
            grad = param.grad
            if self._stream is None:
                torch.linalg.vector_norm(grad, dtype=self._norms.dtype, out=self._norms[index])
                return
            self._stream.wait_stream(torch.cuda.current_stream(grad.device))
            with torch.cuda.stream(self._stream):
                torch.linalg.vector_norm(grad, dtype=self._norms.dtype, out=self._norms[index])
            grad.record_stream(self._stream)  # the gradient may be freed before the side stream reads it

        return record_norm

    def total(self) -> torch.Tensor:
        """The global norm of the gradients since the last reset (0-d tensor, no host sync)."""
        if self._stream is not None:
            torch.cuda.current_stream(self._norms.device).wait_stream(self._stream)
        return torch.linalg.vector_norm(self._norms)

    def reset(self) -> None:
        """Forget the recorded norms (parameters without a gradient next time count as zero)."""
        self._norms.zero_()

    def remove(self) -> None:
        """Unregister the hooks."""
        for handle in self._handles:
            handle.remove()

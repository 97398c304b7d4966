"""Nexus (paper Alg. 3): one inner normalized-SGD step per inner batch, displacement as the outer gradient.

See docs/theory.md for what the pseudo-gradient equals to second order in the inner step size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from nexus_pretrain.optim.base import (clip_coefficient, clip_gradients, record_peak_learning_rates,
                                       scale_learning_rates, skipped)
from nexus_pretrain.optim.dtensor import is_dtensor as _is_dtensor
from nexus_pretrain.optim.dtensor import like_param as _like_param
from nexus_pretrain.optim.dtensor import local_tensor as _local
from nexus_pretrain.optim.grad_norm import BackwardGradNorm
from nexus_pretrain.optim.normalized import MIN_NORM, global_norm, normalized_step
from nexus_pretrain.optim.traits import NEXUS_VARIANTS as VARIANTS


def _wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for 16-bit parameters, the parameter's own dtype otherwise (fp64 stays fp64)."""
    return torch.promote_types(dtype, torch.float32)


@dataclass
class _Window:
    """What one step's window of inner batches accumulates between step() calls."""

    micro_steps: int = 0
    norm_sum: Optional[torch.Tensor] = None
    direction: Optional[List[torch.Tensor]] = None  # random, parallel: gamma * sum of normalized grads


class Nexus:
    """Nexus gradient approximator around any outer optimizer (paper Alg. 3).

    Each ``micro_step`` moves the parameters by an inner step on the inner batch's gradient ``g`` (the
    gradient of the inner batch's mean loss: the trainer never divides it by K); ``step`` hands the
    total displacement ``anchor - p`` to the outer optimizer as its gradient, after putting the
    parameters back at the anchor (the parameters at the start of the window).

    Variants (``variant``):

    * ``nexus``: ``p -= gamma * g / ||g||`` with the global L2 norm over all parameters (and ranks).
    * ``nexus_dot``: ``p -= gamma * g`` (the paper's Nexus-Dot ablation: Alg. 3 with a plain SGD inner step).
    * ``nsgd``: K = 1. Gradients accumulate into the global batch's mean and ``step`` takes one
      normalized step on it, so the pseudo-gradient is ``gamma * g / ||g||`` (paper Sec. 5.2, "NSGD").
    * ``parallel``: control without the alignment term. Every inner gradient is taken at the anchor
      (the parameters never move within the window); the pseudo-gradient is ``gamma * sum_m g_m / ||g_m||``,
      i.e. Nexus's first-order term exactly, with the ``gamma^2`` cross term removed deterministically.
    * ``random``: control for Nexus's sequential gradient alignment. The Nexus inner iterate
      ``theta_m = theta_{m-1} - gamma * g_m / ||g_m||`` is kept as bookkeeping (the buffer
      ``direction = anchor - theta_m``), but gradient m is evaluated at
      ``x_m = anchor + ||theta_{m-1} - anchor|| * r_m / ||r_m||`` with ``r_m`` a fresh standard
      Gaussian vector over all parameters. The pseudo-gradient is ``anchor - theta_K``. So each
      gradient is taken at the same distance from the anchor as Nexus's would be (same step
      magnitudes, curvature probed at the same radius) but in a direction independent of the earlier
      gradients: since ``r_m`` is symmetric, ``E[J x_m] = 0`` and the second-order cross term of
      Nexus (``-gamma^2 sum_{l<m} J_{s_m} u_{s_l}``) vanishes in expectation. No pre-forward hook is
      needed: ``micro_step`` places the parameters at ``x_{m+1}`` right after using gradient m, and
      ``x_1`` is the anchor itself (distance 0). The last placement of a window is never used by a
      forward; ``step`` restores the anchor. ``r`` comes from a generator seeded with ``seed`` (its
      state is in ``state_dict``); all ranks use the same stream, so replicated parameters (DDP) stay
      identical, and shards (FSDP2) draw equal numbers (still a symmetric, zero-mean direction).
      Costs one more parameter-sized buffer than ``nexus``.

    The only extra state of ``nexus``/``nexus_dot`` is the anchor: one copy of the parameters in fp32
    (fp64 parameters keep fp64), refreshed at the first ``micro_step`` of every window, so parameters
    changed between steps (a loaded checkpoint) are picked up. Between steps the anchor equals the
    parameters, so ``state_dict`` stores it only when taken mid-window. ``nsgd`` keeps no anchor.
    With ``offload_anchor`` the anchor lives in CPU memory (pinned when CUDA is available) and is
    copied with ``non_blocking``; stream order keeps those copies correct without a host sync. On CUDA
    the next window's snapshot is taken right after the outer step on a side stream, overlapping the
    next forward/backward; so between steps change the parameters only together with
    ``load_state_dict`` (as a resume does), which discards that snapshot.
    With bf16 parameters the inner displacement (about gamma / sqrt(#params) per element and micro
    step) is mostly below bf16 resolution; train with fp32 master weights (autocast) instead.

    Data parallel: each micro_step needs the inner batch's gradient already averaged over ranks (a DDP
    all-reduce or FSDP2 reduce-scatter at the end of every inner batch), which
    ``consumes_each_inner_batch`` says (False only for ``nsgd``). The norm is global: DTensor gradients
    are reduced across ranks by ``get_total_norm``. Where the parameters are plain tensors that are
    shards of a larger vector (DeepSpeed ZeRO's flat fp32 partitions), pass ``norm_fn``: it maps the
    local tensors to their global L2 norm, and is used for the inner step, the random variant's radii
    and the pseudo-gradient clipping.

    Gradient clipping (``max_grad_norm``) applies to the pseudo-gradient; weight decay and the
    learning rate stay the outer optimizer's. ``inner_lr`` (gamma) is fixed unless
    ``inner_lr_follows_schedule``. ``compile_inner_step`` runs the nexus variant's inner step
    torch.compiled (the first micro_step pays the compile).
    """

    def __init__(
        self,
        outer: torch.optim.Optimizer,
        inner_lr: float,
        variant: str = "nexus",
        offload_anchor: bool = False,
        max_grad_norm: float = 0.0,
        inner_lr_follows_schedule: bool = False,
        seed: int = 0,
        norm_fn: Optional[Callable[[List[torch.Tensor]], torch.Tensor]] = None,
        compile_inner_step: bool = False,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r} is not one of {', '.join(VARIANTS)}")
        if not inner_lr > 0:
            raise ValueError(f"inner_lr={inner_lr} must be > 0")
        if max_grad_norm < 0:
            raise ValueError(f"max_grad_norm={max_grad_norm} must be >= 0 (0 disables clipping)")
        self.outer = outer
        record_peak_learning_rates(outer)
        self.variant = variant
        self.peak_inner_lr = float(inner_lr)
        self.inner_lr = float(inner_lr)
        self.offload_anchor = offload_anchor
        self.max_grad_norm = max_grad_norm
        self.inner_lr_follows_schedule = inner_lr_follows_schedule
        self._norm = norm_fn or global_norm
        self._normalized_step = torch.compile(normalized_step, fullgraph=True) if compile_inner_step else normalized_step
        self.consumes_each_inner_batch = variant != "nsgd"
        """Every inner batch's mean gradient must be reduced across ranks before micro_step."""
        self.params: List[torch.Tensor] = []
        seen = set()
        for group in outer.param_groups:
            for p in group["params"]:
                if id(p) not in seen:
                    seen.add(id(p))
                    self.params.append(p)
        if not self.params:
            raise ValueError("outer has no parameters; build it on the model's parameters")
        self._index = {id(p): i for i, p in enumerate(self.params)}  # position of a parameter in self.params
        self._anchor: Optional[List[torch.Tensor]] = None
        self._window = _Window()
        # Offloaded anchor on CUDA: the device-to-host snapshot of the next window's anchor starts on a
        # side stream right after the outer step and overlaps the next forward/backward.
        self._copy_stream = None
        self._snapshot_done: Optional[Any] = None  # CUDA event of that copy; None when no copy is pending
        self._uses_anchor = variant not in ("nsgd", "parallel")  # the parameters move within the window
        if offload_anchor and self._uses_anchor and _local(self.params[0]).is_cuda:
            self._copy_stream = torch.cuda.Stream(device=_local(self.params[0]).device)
        # Plain tensors: the inner step's global norm is accumulated during backward by hooks (on a
        # side stream on CUDA). DTensors (FSDP2) need a cross-rank reduction, taken after backward.
        self._backward_norm: Optional[BackwardGradNorm] = None
        if variant != "nsgd" and norm_fn is None and not any(_is_dtensor(p) for p in self.params):
            self._backward_norm = BackwardGradNorm(self.params)
        self.generator: Optional[torch.Generator] = None
        if variant == "random":
            self.generator = torch.Generator(device=_local(self.params[0]).device)
            self.generator.manual_seed(seed)

    # ------------------------------------------------------------------ trainer interface

    def set_lr_multiplier(self, multiplier: float) -> None:
        """Scale the outer learning rates (and gamma when inner_lr_follows_schedule)."""
        scale_learning_rates(self.outer, multiplier)
        if self.inner_lr_follows_schedule:
            self.inner_lr = self.peak_inner_lr * multiplier

    @torch.no_grad()
    def micro_step(self) -> None:
        """Consume the inner batch's gradient: an inner step (none for nsgd), then drop the gradients."""
        window = self._window
        if self.variant == "nsgd":
            window.micro_steps += 1
            return
        params = [p for p in self.params if p.grad is not None]
        if not params:
            raise RuntimeError("micro_step() found no gradients; call loss.backward() before it")
        if window.micro_steps == 0:
            self._start_window()
        grads = [p.grad for p in params]
        if self._backward_norm is not None:
            norm = self._backward_norm.total()
            self._backward_norm.reset()
        else:
            norm = self._norm(grads)
        window.norm_sum = norm if window.norm_sum is None else window.norm_sum + norm
        window.micro_steps += 1
        local_grads = [_local(g) for g in grads]
        local_params = [_local(p) for p in params]
        scale = self.inner_lr / norm.clamp_min(MIN_NORM)
        if self.variant == "nexus":
            self._normalized_step(local_params, local_grads, scale)
        elif self.variant == "nexus_dot":
            torch._foreach_add_(local_params, local_grads, alpha=-self.inner_lr)
        elif self.variant == "parallel":  # the parameters stay at the anchor
            direction = self._window.direction
            self._normalized_step([direction[self._index[id(p)]] for p in params], local_grads, -scale)
        else:  # random: the scaled gradients also advance the bookkeeping iterate
            torch._foreach_mul_(local_grads, scale)
            self._random_inner_step(params, local_grads)
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, skip_nonfinite: bool = False) -> Dict[str, torch.Tensor]:
        """Pseudo-gradient into .grad, parameters back to the anchor, clip, outer step; metrics (see
        StepOptimizer.step for ``skip_nonfinite``)."""
        window = self._window
        if window.micro_steps == 0:
            raise RuntimeError("step() called before any micro_step(); call micro_step() after each backward")
        if self.variant == "nsgd":
            mean_norm = self._nsgd_pseudo_gradient()
        else:
            self._pseudo_gradient_and_restore()
            mean_norm = window.norm_sum / window.micro_steps
        pseudo_norm, usable = self._clip_pseudo_gradient(skip_nonfinite)
        if not usable:  # the parameters are back at the anchor already
            self.discard()
            return skipped(pseudo_norm)
        self.outer.step()
        self._window = _Window()
        if self._copy_stream is not None:
            self._start_async_snapshot()
        return {
            "grad_norm": pseudo_norm,  # of the pseudo-gradient, the vector max_grad_norm clips
            "clip_coef": clip_coefficient(pseudo_norm, self.max_grad_norm),
            "mean_inner_grad_norm": mean_norm,
        }

    def zero_grad(self) -> None:
        """Drop gradients (the outer optimizer's zero_grad, set_to_none)."""
        if self._backward_norm is not None:
            self._backward_norm.reset()  # norms of gradients dropped unused (a discarded window)
        self.outer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def discard(self) -> None:
        """Put the parameters back at the anchor, drop gradients and the window (no outer step)."""
        if self._window.micro_steps > 0 and self._uses_anchor:
            for i, p in enumerate(self.params):
                local = _local(p)
                local.copy_(self._anchor_on(i, local.device) if self.offload_anchor else self._anchor[i])
        self._window = _Window()
        self.zero_grad()
        if self._copy_stream is not None:
            self._start_async_snapshot()

    def state_dict(self) -> Dict[str, Any]:
        """Outer state, the random generator's state, and the open window (only when mid-window).

        Like torch optimizers' state dicts, tensors are references: save or copy before stepping on.
        """
        state: Dict[str, Any] = {"outer": self.outer.state_dict(), "variant": self.variant}
        if self.generator is not None:
            state["rng"] = self.generator.get_state()
        window = self._window
        if window.micro_steps > 0:
            if self._copy_stream is not None:
                torch.cuda.current_stream().synchronize()  # the pinned anchor is read on the host
            state["window"] = {
                "micro_steps": window.micro_steps,
                "norm_sum": window.norm_sum,
                "anchor": list(self._anchor) if self._uses_anchor else None,
                "direction": window.direction,
            }
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        if state.get("variant", self.variant) != self.variant:
            raise ValueError(f"state['variant']={state['variant']!r} does not match variant={self.variant!r}")
        self.outer.load_state_dict(state["outer"])
        if self._snapshot_done is not None:
            self._snapshot_done.synchronize()  # a pending copy must not land on the restored anchor
        self._snapshot_done = None  # the parameters may have been replaced: snapshot them again
        if self.generator is not None:
            if "rng" not in state:
                raise ValueError("state has no 'rng' entry; it was not saved by a random-variant Nexus")
            self.generator.set_state(state["rng"])
        self._window = _Window()
        saved = state.get("window")
        if saved is None:
            return
        self._window.micro_steps = saved["micro_steps"]
        self._window.norm_sum = saved["norm_sum"]
        if saved["anchor"] is not None:
            self._ensure_anchor()
            for dst, src in zip(self._anchor, saved["anchor"]):
                dst.copy_(src)
        if saved["direction"] is not None:
            self._window.direction = [d.clone() for d in saved["direction"]]

    # ------------------------------------------------------------------ internals

    def _ensure_anchor(self) -> None:
        if self._anchor is not None:
            return
        pin = self.offload_anchor and torch.cuda.is_available()
        self._anchor = []
        for p in self.params:
            local = _local(p)
            device = torch.device("cpu") if self.offload_anchor else local.device
            self._anchor.append(
                torch.empty(local.shape, dtype=_wide_dtype(local.dtype), device=device, pin_memory=pin)
            )

    def _start_window(self) -> None:
        """At the first micro_step of a window: the anchor snapshot, and the zeroed direction buffer of the
        variants that keep one (random, parallel)."""
        if self._uses_anchor:
            self._snapshot_anchor()
        if self.variant in ("random", "parallel"):
            self._window.direction = [torch.zeros(_local(p).shape, dtype=_wide_dtype(_local(p).dtype),
                                                  device=_local(p).device) for p in self.params]

    def _snapshot_anchor(self) -> None:
        """anchor = current parameters."""
        self._ensure_anchor()
        locals_ = [_local(p) for p in self.params]
        if self._snapshot_done is not None:  # taken asynchronously after the last outer step
            torch.cuda.current_stream(locals_[0].device).wait_event(self._snapshot_done)
            self._snapshot_done = None
        elif self.offload_anchor:
            for a, p in zip(self._anchor, locals_):
                a.copy_(p, non_blocking=True)
        else:
            torch._foreach_copy_(self._anchor, locals_)

    def _start_async_snapshot(self) -> None:
        """Copy the parameters to the pinned anchor on the side stream, after the outer step's kernels.

        Forward and backward only read the parameters; the next micro_step waits for the copy before
        its inner step writes them.
        """
        self._ensure_anchor()
        self._copy_stream.wait_stream(torch.cuda.current_stream(self._copy_stream.device))
        with torch.cuda.stream(self._copy_stream):
            for a, p in zip(self._anchor, self.params):
                a.copy_(_local(p), non_blocking=True)
            self._snapshot_done = torch.cuda.Event()
            self._snapshot_done.record(self._copy_stream)

    def _anchor_on(self, i: int, device: torch.device) -> torch.Tensor:
        return self._anchor[i].to(device, non_blocking=True)

    def _random_inner_step(self, params: List[torch.Tensor], scaled_grads: List[torch.Tensor]) -> None:
        """Advance the bookkeeping iterate, then put the parameters at the next random point."""
        direction = self._window.direction
        torch._foreach_add_([direction[self._index[id(p)]] for p in params], scaled_grads)
        radius = self._norm([_like_param(p, d) for p, d in zip(self.params, direction)])
        by_id = {id(p): g for p, g in zip(params, scaled_grads)}
        noise = [by_id.get(id(p), torch.empty_like(_local(p))) for p in self.params]  # reuse grad memory
        for r in noise:
            r.normal_(generator=self.generator)
        r_norm = self._norm([_like_param(p, r) for p, r in zip(self.params, noise)])
        torch._foreach_mul_(noise, radius / r_norm.clamp_min(MIN_NORM))
        locals_ = [_local(p) for p in self.params]
        if self.offload_anchor:
            for i, (p, r) in enumerate(zip(locals_, noise)):
                p.copy_(self._anchor_on(i, p.device)).add_(r)
        else:
            torch._foreach_copy_(locals_, self._anchor)
            torch._foreach_add_(locals_, noise)

    def _pseudo_gradient_and_restore(self) -> None:
        """Set p.grad = anchor - theta_K (random, parallel: the direction buffer) and p = anchor."""
        locals_ = [_local(p) for p in self.params]
        random = self.variant == "random"
        if not self._uses_anchor:  # parallel: the parameters never left the anchor
            pseudo = self._window.direction
        elif self.offload_anchor:
            pseudo = []
            for i, p in enumerate(locals_):
                anchor = self._anchor_on(i, p.device)  # one host-to-device copy per parameter
                pseudo.append(self._window.direction[i] if random else anchor - p)
                p.copy_(anchor)
        else:
            pseudo = self._window.direction if random else torch._foreach_sub(self._anchor, locals_)
            torch._foreach_copy_(locals_, self._anchor)
        for p, local, g in zip(self.params, locals_, pseudo):
            p.grad = _like_param(p, g if g.dtype == local.dtype else g.to(local.dtype))

    def _clip_pseudo_gradient(self, skip_nonfinite: bool) -> Tuple[torch.Tensor, bool]:
        """Clip the pseudo-gradient to max_grad_norm (0: no clipping); its pre-clip global norm and
        whether it is usable (see clip_gradients)."""
        norm_fn = None if self._norm is global_norm else self._norm
        return clip_gradients(self.params, self.max_grad_norm, skip_nonfinite, norm_fn)

    def _nsgd_pseudo_gradient(self) -> torch.Tensor:
        """Replace the accumulated gradient g by gamma * g / ||g||; return ||g||."""
        params = [p for p in self.params if p.grad is not None]
        if not params:
            raise RuntimeError("step() found no accumulated gradients for variant='nsgd'")
        grads = [p.grad for p in params]
        norm = self._norm(grads)
        torch._foreach_mul_([_local(g) for g in grads], self.inner_lr / norm.clamp_min(MIN_NORM))
        return norm

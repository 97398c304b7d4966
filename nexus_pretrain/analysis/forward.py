"""Which forward a run's logged losses come from (compute precision, FP8 layers in its evaluations): runs
compared at one pretraining loss must agree on it, or equal values are not the same loss."""

from __future__ import annotations

from typing import Any, Dict

FP8_EVALUATIONS = "FP8 evaluations"
"""What recorded_forward calls whether a run's evaluated losses went through FP8 layers: model.float8=true
without model.float8_eval=bf16."""
FP8_COSINES = "FP8 gradient cosines"
"""What recorded_forward calls whether a run's gradient cosines went through FP8 layers: model.float8=true."""


def recorded_forward(cfg: Dict[str, Any], metric: str = "") -> Dict[str, str]:
    """The recorded settings that decide the forward a run's logged losses (and ``metric``) come from:
    backend.precision (bf16 or fp32 compute) and FP8_EVALUATIONS ("true"/"false"); for gradient cosines
    (``cos/...``), which go through the training forward whatever model.float8_eval says, also
    FP8_COSINES. Runs compared at one pretraining loss must agree on them, or their numbers are measured
    differently. A setting saved as auto (before runs recorded what auto did) says nothing and is left out."""
    model = cfg.get("model") or {}
    precision = str((cfg.get("backend") or {}).get("precision", "auto")).lower()
    float8 = str(model.get("float8", "false")).lower()
    forward = {} if precision == "auto" else {"backend.precision": precision}
    if float8 != "auto":
        bf16_evaluations = str(model.get("float8_eval", "fp8")).lower() == "bf16"
        forward[FP8_EVALUATIONS] = str(float8 == "true" and not bf16_evaluations).lower()
        if metric.startswith("cos/"):
            forward[FP8_COSINES] = str(float8 == "true").lower()
    return forward

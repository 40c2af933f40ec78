"""Serverless v2: the capacity policy (pure), the scaler loop that applies it, auto-pause and resume."""

from ._autopause import AutoPause
from ._policy import ACU_CPU, ACU_MEMORY, Policy, Sample, Scaling, decide, demand
from ._scaler import Scaler

__all__ = ["ACU_CPU", "ACU_MEMORY", "AutoPause", "Policy", "Sample", "Scaler", "Scaling", "decide", "demand"]

"""Units and names shared from the ground up (torch-free): what a peak is measured in and what it is split into.

`memory/` computes breakdowns with these names; `records/` stores them in trials; the report draws them.
"""

from __future__ import annotations

GIB = 2**30  # bytes per GiB: the unit of budget_gib and peak_gib


def gib(nbytes: int | float) -> float:
    return nbytes / GIB


# The memory breakdown: the model's parts that hold activations, named as the model names its modules (skips
# covers the Fourier skip projections and the output projections), then the training state. A breakdown
# holds every name and sums to the peak allocated bytes.
COMPONENTS = ("encoder", "processor", "modulation_ca", "bandwidth_lins", "modulation_lins", "hv_lins", "skips")
STATE = ("parameters", "gradients", "optimizer_state", "other")
BREAKDOWN_KEYS = COMPONENTS + STATE

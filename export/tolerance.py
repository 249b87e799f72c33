"""How exported outputs are compared with their reference (torch-free, so that the one-graph
export's check uses the same rule without torch): `|got - want| <= ATOL + RTOL * magnitude`,
with magnitude the scale float32 rounding grows with (export.parity: the largest |value| in that
row of eager's output; export.generate_graph: a log-probability's summed step-logit scale).
Float32 rounding grows with the size of the numbers involved and CPUs sum in different orders, so
a fixed absolute bound refuses correct exports on machines it was never tried on; a wrong weight,
a dropped bias or a missing term moves values by orders of magnitude more than RTOL."""

from __future__ import annotations

RTOL = 1e-5  # ~80 float32 ulps of the magnitude
ATOL = 1e-6  # floor for values whose magnitude is near zero


def allowed(magnitude):
    """The largest |difference| accepted for values of this magnitude (scalar or array)."""
    return ATOL + RTOL * magnitude

"""Sampling: step-wise generation with carried state (Stepper), int8 weights (quantize), and
the generation loop (generate)."""

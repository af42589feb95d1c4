"""Temporal-aware refinement (TAR) of the per-frame bodies: a causal or short-lookahead stage
between the regressor and the outputs (`model.py`, `stage.py`, `features.py`)."""

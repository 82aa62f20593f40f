"""Robustness benchmark for uncertainty-aware neural networks."""

__version__ = "0.1.0"

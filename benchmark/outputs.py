"""What a network of each predictive kind must return (the table in ``benchmark.plugin``), in one place.

The harness (``benchmark.predictive``) and the contract check (``benchmark.validate``) both read these
rules, so a plugin is refused by ``validate-plugin`` for exactly what would fail during a run.
"""

from __future__ import annotations

import torch

from benchmark.errors import PluginOutputError


def expected_output(kind: str, batch: int, classes: int | str = "C") -> str:
    """The output a ``kind`` network must return for a batch, in words."""
    if kind == "moments":
        return f"(mean [{batch}, {classes}], var [{batch}, {classes}])"
    if kind == "ensemble":
        return f"[M, {batch}, {classes}]"
    return f"[{batch}, {classes}]"


def logits_of(output) -> torch.Tensor:
    """The logits of a raw output: the mean of a moment network's (mean, var), else the output itself."""
    return output[0] if isinstance(output, tuple) else output


def checked_logits(kind: str, output, batch: int, classes: int | None = None) -> torch.Tensor:
    """The logits of one network call (``[M, B, C]`` for an ensemble) after checking the output's form;
    :class:`PluginOutputError` says what is wrong. ``classes=None`` accepts any class count."""
    if kind == "moments":
        if not (isinstance(output, tuple) and len(output) == 2 and all(isinstance(t, torch.Tensor) for t in output)):
            raise PluginOutputError(f"a moments network must return (mean, var) tensors, got {type(output).__name__}")
        if output[0].shape != output[1].shape:
            raise PluginOutputError(f"mean {tuple(output[0].shape)} and var {tuple(output[1].shape)} differ in shape")
        if (output[1] < 0).any():  # the predictive takes its square root (benchmark.predictive)
            raise PluginOutputError("the variance has negative entries")
    elif isinstance(output, tuple):  # e.g. a moments network declared as another kind: its variance would be dropped
        raise PluginOutputError(f"a {kind} network must return one tensor, got a tuple of {len(output)}; "
                                "a network returning (mean, var) is predictive = 'moments'")
    logits = logits_of(output)
    if not isinstance(logits, torch.Tensor):
        raise PluginOutputError(f"the network returned {type(logits).__name__}, not a tensor of logits")
    rank = 3 if kind == "ensemble" else 2
    if logits.dim() != rank or logits.shape[-2] != batch:
        raise PluginOutputError(f"output shape {tuple(logits.shape)} for a batch of {batch}; "
                                f"expected {'[M, B, C]' if rank == 3 else '[B, C]'}")
    if classes is not None and logits.shape[-1] != classes:
        raise PluginOutputError(f"output has {logits.shape[-1]} classes, earlier calls (or the dataset) had {classes}")
    return logits

"""Checkpoints that cannot run code: safetensors, or ``torch.load(weights_only=True)`` for ``.pt`` files.

A pickle can execute arbitrary code when loaded; the harness never unpickles anything but plain tensors.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.store import atomic_write_bytes


def save_checkpoint(network: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write the network's tensors as safetensors, atomically, so a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(tmp), metadata=metadata)
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()


#: what a user does about a checkpoint file they named (``--checkpoint``) that cannot be used
GIVEN_FILE_FIX = "pass the .safetensors (or tensors-only .pt) checkpoint of this plugin's network"
#: what a user does about a cached checkpoint (runs' checkpoints/) that cannot be used
CACHED_FILE_FIX = "delete it or pass --retrain"


def read_state(path: Path, fix: str = GIVEN_FILE_FIX) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file; refuses anything that would need a full unpickler. Every refusal is
    one line that ends with ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise BenchmarkError(f"{path} is not a valid safetensors checkpoint ({exc}); {fix}") from exc
    try:
        with warnings.catch_warnings():  # torch warns about a raw pickle's protocol before refusing it
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code-carrying pickles, RuntimeError for corrupt files
        raise BenchmarkError(
            f"refusing checkpoint {path}: it is not a plain tensor file loadable with weights_only=True "
            f"({type(exc).__name__}); {fix}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchmarkError(f"refusing checkpoint {path}: expected a state dict of tensors; {fix}")
    return state


def load_checkpoint(network: nn.Module, path: Path, fix: str = GIVEN_FILE_FIX) -> None:
    """Load a checkpoint file into ``network``; one that does not fit it exactly is refused, saying ``fix``."""
    load_state(network, read_state(path, fix), path, fix)


def load_state(network: nn.Module, state: dict[str, torch.Tensor], path: Path, fix: str = GIVEN_FILE_FIX) -> None:
    """Load the tensors read from ``path`` into ``network``; a state that does not fit is one line naming the first
    missing and unexpected keys and shape mismatches (torch's own message spans many lines and names none of
    them first)."""
    misfit = state_misfit(network.state_dict(), state)
    if misfit:
        raise BenchmarkError(f"checkpoint {path} does not fit this model: {misfit}; {fix}")
    network.load_state_dict(state, strict=True)


def state_misfit(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], shown: int = 3) -> str:
    """How ``given`` differs from the state dict ``expected``, in one line; empty when it fits."""
    def listing(what: str, items: list[str]) -> str:
        more = f" and {len(items) - shown} more" if len(items) > shown else ""
        return f"{len(items)} {what} ({', '.join(items[:shown])}{more})"

    missing = sorted(key for key in expected if key not in given)
    unexpected = sorted(key for key in given if key not in expected)
    shapes = [f"{key}: {tuple(given[key].shape)} for {tuple(expected[key].shape)}" for key in sorted(expected)
              if key in given and given[key].shape != expected[key].shape]
    parts = [listing(what, items) for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                                      ("shape mismatches", shapes)) if items]
    return "; ".join(parts)

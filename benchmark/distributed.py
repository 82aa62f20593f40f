"""One evaluation sharded across the processes of a ``torchrun`` launch (one node or many).

Every rank loads the data and builds the network; rank 0 trains (or loads) it and broadcasts the
weights. Each evaluation condition splits the test set into the same batches as a single-process run,
rank r takes batches r, r + N, r + 2N, ..., every batch is seeded from (run seed, condition, batch
index), and the per-batch results are gathered in batch order. So a sharded run computes exactly what
a single process computes, batch for batch; rank 0 alone writes the run directory and the leaderboard.

Collectives use the gloo backend whatever the device: they carry small per-example results and one
copy of the weights, and gloo works on CPU-only nodes and across nodes alike.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from benchmark.errors import BenchmarkError, PluginOutputError


@dataclass(frozen=True)
class World:
    """The processes of this run: ``size`` 1 outside torchrun."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.size == self.rank

    def gather(self, mine: dict[int, object], error: str | None = None) -> list:
        """Every rank's ``{batch index: result}`` merged, as a list in batch order, on every rank.

        ``error``: this rank's batches failed (the plugin's fault); every rank then raises it, so the
        ranks stay in step and record the same failed condition."""
        parts = [(mine, error)]
        if self.size > 1:
            parts = [None] * self.size
            dist.all_gather_object(parts, (mine, error))
        errors = [e for _, e in parts if e is not None]
        if errors:
            raise PluginOutputError(errors[0])
        merged = {b: value for part, _ in parts for b, value in part.items()}
        return [merged[b] for b in sorted(merged)]

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def broadcast_weights(self, network: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's identically built network."""
        if self.size == 1:
            return
        for tensor in network.state_dict().values():
            staged = tensor.detach().cpu().contiguous()
            dist.broadcast(staged, src=0)
            tensor.copy_(staged)

    def on_main(self, fn, share: bool = True):
        """``fn()`` on rank 0 only; its result (``share``) or None on every rank. If it raises, every rank
        raises, so no rank is left waiting at a collective for one that stopped."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except BaseException as exc:
                error = exc
        if self.size > 1:
            outcome = self.broadcast((result if share else None,
                                      None if error is None else f"{type(error).__name__}: {error}"))
            if error is None and outcome[1] is not None:
                raise BenchmarkError(f"rank 0 stopped: {outcome[1]}")
            result = result if self.is_main else outcome[0]
        if error is not None:
            raise error
        return result

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def world_from_env() -> World:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1), else a single-process world."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        try:
            # training on rank 0 can take long while the others wait at the first collective
            dist.init_process_group("gloo", timeout=dt.timedelta(hours=12))
        except (RuntimeError, ValueError) as exc:
            raise BenchmarkError(f"cannot join the torchrun process group (rank {rank} of {size}): {exc}") from exc
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    return World(rank, size, local_rank)


def shutdown() -> None:
    """Leave the torchrun process group, if this process joined one, so the launch exits cleanly."""
    if dist.is_initialized():
        dist.destroy_process_group()

"""Where the trainer runs: the torchrun process group (one process per GPU) and the device of this process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from yolov6_sdk.errors import ConfigError


@dataclass
class DistInfo:
    """This process's place in the run: global rank, number of processes, GPU index on its node, and whether
    it created the process group (and so destroys it at the end)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not torch.distributed.is_initialized()
    if owns:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, owns)


def select_device(name: str, dist: DistInfo) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``N`` as a torch device; under torchrun each process takes the
    GPU of its LOCAL_RANK. Raises :class:`ConfigError` for a malformed name or CUDA asked for without CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    name = f"cuda:{name}" if name.isdigit() else name
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or N, got {name!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
        device = torch.device("cuda", dist.local_rank if dist.world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    return device


__all__ = ["DistInfo", "init_distributed", "select_device"]

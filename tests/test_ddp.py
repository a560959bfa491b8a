"""Distributed training: two CPU processes (gloo) train one epoch and end with identical weights."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from yolov6_sdk.training.datagen import generate_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checksum(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _worker(rank: int, world: int, port: int, data: str, out: str, sums: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    from yolov6_sdk.training.ema import unwrap
    from yolov6_sdk.training.trainer import TrainConfig, Trainer

    config = TrainConfig(
        model="yolov6n", data=data, epochs=1, batch=4, imgsz=128, workers=0, device="cpu", out=out,
        min_warmup_iters=0, warmup_epochs=1.0, eval_interval=1,
    )  # fmt: skip
    trainer = Trainer(config)
    assert trainer.dist.world == world and len(trainer.loader) == 2  # 8 images, 2 per rank per step
    trainer.fit()
    Path(sums, f"checksum.{rank}").write_text(_checksum(unwrap(trainer.model).state_dict()))


def test_two_cpu_processes_train_one_epoch_and_agree_on_the_weights(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "shapes", 8, 2, imgsz=(96, 128), seed=4, num_classes=3)
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out), str(tmp_path)), nprocs=2, join=True)
    sums = [(tmp_path / f"checksum.{rank}").read_text() for rank in range(2)]
    assert sums[0] == sums[1]
    assert (out / "last.pt").is_file() and (out / "results.csv").is_file()  # written by rank 0

"""The YOLOv6 trainer: the official recipe (meituan/YOLOv6 yolov6/core/engine.py) on one device or under torchrun.

Recipe: SGD with Nesterov momentum over three parameter groups (BatchNorm weights without weight decay, other
weights with it, biases without it), or AdamW over the same groups for short runs; linear warm-up of learning
rate, momentum and gradient accumulation; cosine learning-rate decay per epoch; gradient accumulation up to a
nominal batch of 64 (gradients still accumulating when an epoch ends are dropped, as the official does); an EMA
of the weights that is evaluated and saved; mosaic switched off for the last epochs; AMP on CUDA.

Outputs in ``config.out``: ``last.pt`` and ``best.pt`` (EMA weights in the SDK checkpoint format, best by
mAP50-95), ``resume.pt`` (weights, optimizer, EMA, scaler and step counters after the last finished epoch),
``results.csv`` and ``results.png``. Every file is written atomically and ``resume.pt`` last, so an interrupted
run resumes from its last finished epoch. Only rank 0 writes and evaluates. The shuffling order of each epoch is
seeded from ``(seed, epoch)`` and each sample's augmentation from ``(seed, epoch, index)``, so a resumed run
repeats what an uninterrupted one would have done.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from yolov6_sdk.checkpoint_reader import load_plain
from yolov6_sdk.errors import CheckpointError, ConfigError
from yolov6_sdk.evaluate import load_eval_set, load_split
from yolov6_sdk.fileio import atomic_path
from yolov6_sdk.models import build_model
from yolov6_sdk.weights import save_checkpoint

from . import distill as kd
from .config import TrainConfig
from .datasets import TrainDataset, build_dataloader, set_loader_epoch
from .distributed import init_distributed, select_device
from .ema import ModelEMA, unwrap
from .plots import plot_results, read_results_csv, write_results_csv
from .precision import choose_precision
from .qat import prepare_qat
from .recipe import build_loss, build_optimizer, load_pretrained, lr_factor
from .repopt import prepare_repopt
from .validate import evaluate_model

LOGGER = logging.getLogger("yolov6_sdk.training.trainer")
STATE_FORMAT = "yolov6-sdk-train/1"
EpochCallback = Callable[[int, dict[str, Any]], None]
LOSS_COLUMNS = ("class_loss", "iou_loss", "dfl_loss")
_RESUMABLE_CHANGES = ("device", "workers", "epochs")  # settings a resumed run may change


# ------------------------------------------------------------------------------------------------- trainer


@dataclass
class _Progress:
    """Counters that a resume restores."""

    epoch: int = 0  # epochs finished
    last_opt_step: int = -1
    best_map: float = -1.0
    rows: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Train a YOLOv6 model with :class:`TrainConfig`; :meth:`fit` runs the remaining epochs.

    Args:
        config: the run's settings.
        progress: show a tqdm progress bar (rank 0).
        on_epoch_end: called on rank 0 after each epoch's files are written, with the epoch number (1-based)
            and that epoch's row of ``results.csv``.
    """

    def __init__(
        self,
        config: TrainConfig,
        progress: bool = False,
        on_epoch_end: EpochCallback | None = None,
        _state: dict[str, Any] | None = None,
    ) -> None:
        self.config, self.show_progress, self.on_epoch_end = config, progress, on_epoch_end
        self.out = Path(config.out)
        self.dist = init_distributed()
        self.device = select_device(config.device, self.dist)
        self.precision = choose_precision(self.device, config.amp)
        self.amp = self.precision.scaler  # CUDA fp16: scale the loss
        if self.dist.main:
            LOGGER.info("step precision: %s (%s)", self.precision.name, self.precision.reason)
        if _state is None and self.dist.main and (self.out / "resume.pt").exists():
            raise ConfigError(
                f"{self.out} already holds a training run; continue it with --resume {self.out / 'last.pt'} "
                "or choose another --out"
            )
        self._setup_data()
        self._setup_model()
        self._setup_optimisation()
        self.state = _Progress()
        if _state is not None:
            self._restore(_state)
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # ------------------------------------------------------------------------------------------ setup

    def _setup_data(self) -> None:
        cfg, dist = self.config, self.dist
        if cfg.batch % dist.world:
            raise ConfigError(f"batch {cfg.batch} must be a multiple of the number of processes ({dist.world})")
        train = load_split(cfg.data, "train")
        _log_skipped("train", train.skipped)
        self.names = list(train.names)
        self.data_fingerprint = train.fingerprint()
        self.dataset = TrainDataset(train, cfg.imgsz, cfg.augment_config, cfg.seed)
        workers = min(cfg.workers, max((os.cpu_count() or 1) // dist.world, 1))
        self.loader = build_dataloader(self.dataset, cfg.batch // dist.world, workers, shuffle=True,
                                       seed=cfg.seed, distributed=dist.world > 1)  # fmt: skip
        self.eval_workers = workers
        self.eval_set = load_eval_set(cfg.data, "val") if dist.main else None
        if self.eval_set is not None and self.eval_set.data.names != self.names:
            raise ConfigError(f"{cfg.data}: train classes {self.names} differ from val classes "
                              f"{self.eval_set.data.names}")  # fmt: skip

    def _setup_model(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.qat = None
        if cfg.qat:  # the fused, fake-quantised model of --weights or --teacher
            model, self.qat = prepare_qat(cfg.model, cfg.teacher, cfg.weights, cfg.data, cfg.imgsz, cfg.qat_target,
                                          (cfg.cwd_weight, cfg.cwd_temperature), cfg.qat_calib, self.names)  # fmt: skip
            self.qat.teacher.to(self.device)
        else:
            model = build_model(cfg.model, num_classes=len(self.names))
        model.names = list(self.names)
        self.pretrained = load_pretrained(model, cfg.weights) if cfg.weights and not cfg.qat else None
        self.model: nn.Module = model.to(self.device)
        self.grad_masks = prepare_repopt(model, cfg.repopt_scales, initialise=cfg.weights is None)
        self.loss_fn = build_loss(model, cfg.iou_type, cfg.atss_warmup_epochs)
        self.teacher = None
        if cfg.distill:
            if not self.loss_fn.use_dfl:
                raise ConfigError(f"{cfg.model} has no DFL branch, which distillation needs; use a v3 model")
            self.teacher = kd.load_teacher(cfg.teacher, model, self.device)
        self.ema = ModelEMA(model, cfg.ema_decay, cfg.ema_tau) if self.dist.main else None

    def _setup_optimisation(self) -> None:
        cfg, world = self.config, self.dist.world
        self.accumulate = max(1, round(cfg.nominal_batch / cfg.batch))
        weight_decay = cfg.weight_decay * cfg.batch * self.accumulate / cfg.nominal_batch
        lr = cfg.base_lr * (cfg.batch / world) / cfg.bs_per_gpu  # official: per-device batch / bs_per_gpu
        self.optimizer = build_optimizer(self.model, lr, cfg.momentum, weight_decay, cfg.optimizer, self.grad_masks)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.iters = len(self.loader)
        self.warmup_iters = max(round(cfg.warmup_epochs * self.iters), cfg.min_warmup_iters)
        LOGGER.info("lr0 %.4g, weight decay %.4g, accumulate %d, warm-up %d iterations, %d iterations/epoch",
                    lr, weight_decay, self.accumulate, self.warmup_iters, self.iters)  # fmt: skip

    # ----------------------------------------------------------------------------------------- resume

    @classmethod
    def resume(cls, path: str | Path, progress: bool = False, on_epoch_end: EpochCallback | None = None,
               **overrides: Any) -> Trainer:  # fmt: skip
        """Continue the run whose ``last.pt``, ``resume.pt`` or folder is ``path`` from its last finished epoch.

        The saved settings are used; ``overrides`` may change ``device``, ``workers`` or ``epochs`` (to extend);
        any other override must equal the saved value (a resume with another model or dataset is refused). The
        run goes on in the folder that holds the resumed file, also when the run was copied or moved there: the
        folder recorded in the state is never written.
        """
        state_path = _state_path(Path(path))
        state = load_plain(state_path)  # bounded, plain tensors and containers only; CheckpointError otherwise
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{state_path} is not a {STATE_FORMAT} training state")
        saved = _in_run_folder(TrainConfig.from_dict(state["config"]), state_path.parent)
        if "out" in overrides and Path(overrides["out"]).resolve() == state_path.parent.resolve():
            overrides = {k: v for k, v in overrides.items() if k != "out"}
        changed = {k: v for k, v in overrides.items() if k not in _RESUMABLE_CHANGES and getattr(saved, k, v) != v}
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
        if changed or unknown:
            started = ", ".join(f"{k}={getattr(saved, k)!r}" for k in sorted(changed))
            raise ConfigError(
                f"{state_path.parent} was started with {started or 'other settings'}; a resumed run keeps its "
                f"settings (only {', '.join(_RESUMABLE_CHANGES)} may change, got {sorted(changed) + unknown}). "
                "Drop those options, or start a new run with --weights and another --out"
            )
        keep = {k: v for k, v in overrides.items() if k in _RESUMABLE_CHANGES}
        config = dataclasses.replace(saved, **keep)
        LOGGER.info("resuming %s after epoch %d of %d", state_path.parent, state["epoch"], config.epochs)
        return cls(config, progress, on_epoch_end, _state=state)

    def _restore(self, state: dict[str, Any]) -> None:
        saved = state.get("data_fingerprint")
        if saved is not None and saved != self.data_fingerprint:
            raise CheckpointError(
                f"the training images or labels under {self.config.data} changed since this run started; a resumed "
                f"run needs the same data. To train on the new data, start a new run from these weights: "
                f"--weights {self.out / 'last.pt'} -o ANOTHER_FOLDER"
            )
        try:
            unwrap(self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state["scaler"] and self.amp:  # empty when the run so far had AMP off (CPU)
                self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"the training state does not fit {self.config.model}: {exc}") from exc
        rows = [r for r in read_results_csv(self.out / "results.csv") if int(r["epoch"]) <= state["epoch"]]
        self.state = _Progress(state["epoch"], state["last_opt_step"], state["best_map"], rows)

    def _save_state(self) -> None:
        ema = self.ema.state_dict() if self.ema is not None else None
        state = {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "data_fingerprint": self.data_fingerprint,
            "epoch": self.state.epoch,
            "last_opt_step": self.state.last_opt_step,
            "best_map": self.state.best_map,
            "model": unwrap(self.model).state_dict(),
            "ema": ema,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        with atomic_path(self.out / "resume.pt") as tmp:
            torch.save(state, tmp)

    # -------------------------------------------------------------------------------------- training

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; returns ``{"epochs", "best_mAP50-95", "last", "best", "out"}``."""
        try:
            for epoch in range(self.state.epoch, self.config.epochs):
                started = time.time()
                losses, lr = self._train_epoch(epoch)
                self._sync_buffers()
                self.state.epoch = epoch + 1
                if self.dist.main:
                    self._end_epoch(epoch, losses, lr, started)
            if self.dist.world > 1:
                torch.distributed.barrier()  # leave together: rank 0 may still be evaluating
        finally:
            if self.dist.owns_group:
                torch.distributed.destroy_process_group()
        return {
            "epochs": self.state.epoch,
            "best_mAP50-95": max(self.state.best_map, 0.0),
            "last": self.out / "last.pt",
            "best": self.out / "best.pt",
            "out": self.out,
        }

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        """One pass over the training set; returns the mean loss terms and the weights group's last lr."""
        cfg = self.config
        self.model.train()
        if epoch >= cfg.epochs - cfg.mosaic_off_epochs and self.dataset.mosaic_enabled:
            LOGGER.info("epoch %d: mosaic and mixup off for the last %d epochs", epoch + 1, cfg.mosaic_off_epochs)
            self.dataset.set_mosaic(False)
        set_loader_epoch(self.loader, epoch)
        self.loader.generator.manual_seed(cfg.seed * 100_003 + epoch)  # same order after a resume
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lr_factor(epoch, cfg.epochs, cfg.lrf)
        self.optimizer.zero_grad(set_to_none=True)
        bar = tqdm(self.loader, total=self.iters, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (self.show_progress and self.dist.main))  # fmt: skip
        sums: dict[str, float] = {}
        for it, (images, targets, _) in enumerate(bar):
            parts = self._train_step(epoch, epoch * self.iters + it, images, targets)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({k: f"{v / (it + 1):.3f}" for k, v in sums.items() if k != "num_positives"})
        count = max(len(self.loader), 1)
        return {k: v / count for k, v in sums.items() if k != "num_positives"}, self.optimizer.param_groups[1]["lr"]

    def _train_step(self, epoch: int, step: int, images: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        images = images.to(self.device, non_blocking=True).float() / 255.0
        targets = targets.to(self.device)
        with self.precision.autocast():
            out = self.model(images)
            distill = None
            if self.teacher is not None:
                distill = kd.teacher_targets(self.teacher, images, cfg.epochs, kd.distill_weights(cfg.model),
                                             cfg.temperature)  # fmt: skip
            if self.qat is not None:
                with torch.no_grad():
                    teacher_neck = self.qat.teacher(images).neck_feats
        reg_lrtb = out.reg_lrtb.float() if out.reg_lrtb is not None else None  # the loss runs in float32
        loss, parts = self.loss_fn(out.cls_scores.float(), out.reg_dist.float(), out.feature_sizes, targets, epoch,
                                   reg_lrtb=reg_lrtb, distill=distill)  # fmt: skip
        if self.qat is not None:  # channel-wise distillation of the neck outputs
            feature_loss = self.qat.feature_loss(out.neck_feats, teacher_neck)
            loss, parts = loss + feature_loss, {**parts, "cwd": feature_loss.detach()}
        if not torch.isfinite(loss) and not self.amp:
            raise ConfigError(f"epoch {epoch + 1}: the loss became {loss.item()}; lower lr0 or check the labels")
        self.scaler.scale(loss * self.dist.world).backward()  # DDP averages gradients; the official scales back
        accumulate = self._warmup(epoch, step)
        if step - self.state.last_opt_step >= accumulate:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
            self.state.last_opt_step = step
        return {key: float(value) for key, value in parts.items()}

    def _warmup(self, epoch: int, step: int) -> int:
        """Set warm-up lr and momentum for iteration ``step``; returns the accumulation count to use."""
        cfg, total = self.config, self.warmup_iters
        if step > total or total == 0:
            return self.accumulate
        momentum = float(np.interp(step, [0, total], [cfg.warmup_momentum, cfg.momentum]))
        adamw = cfg.optimizer == "adamw"
        for k, group in enumerate(self.optimizer.param_groups):
            start = cfg.warmup_bias_lr if k == 2 and not adamw else 0.0  # a 0.1 bias start is SGD-sized
            end = group["initial_lr"] * lr_factor(epoch, cfg.epochs, cfg.lrf)
            group["lr"] = float(np.interp(step, [0, total], [start, end]))
            if adamw:
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum
        return max(1, round(float(np.interp(step, [0, total], [1, cfg.nominal_batch / cfg.batch]))))

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics (each rank updated its own in its last forward)."""
        if self.dist.world > 1:
            for buffer in unwrap(self.model).buffers():
                torch.distributed.broadcast(buffer, src=0)

    # ---------------------------------------------------------------------------------- end of epoch

    def _is_eval_epoch(self, epoch: int) -> bool:
        cfg = self.config
        remaining = cfg.epochs - 1 - epoch
        interval = cfg.eval_interval if remaining >= cfg.heavy_eval_range else min(3, cfg.eval_interval)
        return remaining == 0 or (epoch + 1) % interval == 0

    def _end_epoch(self, epoch: int, losses: dict[str, float], lr: float, started: float) -> None:
        """Evaluate when due, then write results.csv, the chart, the checkpoints and the resume state."""
        cfg = self.config
        metrics = None
        if self._is_eval_epoch(epoch):
            metrics = evaluate_model(self.ema.ema, self.eval_set, cfg.imgsz, batch=cfg.batch // self.dist.world * 2,
                                     conf=cfg.eval_conf, iou=cfg.eval_iou, max_det=cfg.eval_max_det,
                                     workers=self.eval_workers, progress=self.show_progress)  # fmt: skip
            LOGGER.info("epoch %d: mAP50-95 %.4f, mAP50 %.4f", epoch + 1, metrics["mAP50-95"], metrics["mAP50"])
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({f"{k}_loss" if k in ("class", "iou", "dfl") else k: round(v, 6) for k, v in losses.items()})
        row["lr"] = round(lr, 8)
        row["mAP50-95"] = round(metrics["mAP50-95"], 5) if metrics else ""
        row["mAP50"] = round(metrics["mAP50"], 5) if metrics else ""
        row["time"] = round(time.time() - started, 1)  # training and evaluation
        self.state.rows.append(row)
        self._write_outputs(epoch, metrics)
        self._save_state()
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch + 1, row)

    def _write_outputs(self, epoch: int, metrics: dict[str, Any] | None) -> None:
        is_best = metrics is not None and metrics["mAP50-95"] > self.state.best_map
        if is_best:
            self.state.best_map = metrics["mAP50-95"]
        meta = {
            "epoch": epoch + 1,
            "mAP50-95": metrics["mAP50-95"] if metrics else None,
            "mAP50": metrics["mAP50"] if metrics else None,
            "best_mAP50-95": max(self.state.best_map, 0.0),
            "train_config": self.config.to_dict(),
            **(self.qat.meta() if self.qat is not None else {}),
        }
        ema_model = self.ema.ema
        save_checkpoint(self.out / "last.pt", ema_model, self.names, self.config.imgsz, meta)
        if is_best or not (self.out / "best.pt").exists():
            save_checkpoint(self.out / "best.pt", ema_model, self.names, self.config.imgsz, meta)
        write_results_csv(self.out / "results.csv", self.state.rows)
        columns = [c for c in self.state.rows[-1] if c not in ("epoch", "time")]
        plot_results(self.state.rows, self.out / "results.png", columns)


def _in_run_folder(saved: TrainConfig, run: Path) -> TrainConfig:
    """``saved`` writing into ``run``, the folder the resumed state was found in (a copied or moved run says so)."""
    if Path(saved.out).resolve() != run.resolve():
        LOGGER.warning("%s was started in %s; the resumed run writes into %s, where its state is", run, saved.out, run)
    return dataclasses.replace(saved, out=str(run))


def _state_path(path: Path) -> Path:
    candidate = path / "resume.pt" if path.is_dir() else path.with_name("resume.pt")
    if not candidate.is_file():
        raise CheckpointError(
            f"no training state at {candidate}: --resume takes the last.pt (or the folder) of a run that "
            "yolov6-train wrote, which keeps resume.pt beside it"
        )
    return candidate


def _log_skipped(split: str, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        LOGGER.warning("%s split: %d problems, kept going without them; first: %s", split, len(skipped),
                       "; ".join(f"{p}: {r}" for p, r in skipped[:5]))  # fmt: skip


__all__ = ["TrainConfig", "Trainer"]

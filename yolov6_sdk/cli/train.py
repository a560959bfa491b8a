"""``yolov6-train``: train (or fine-tune, resume, self-distil) a YOLOv6 model on a COCO-layout folder or a YOLO yaml.

Multi-GPU / multi-machine: launch with ``torchrun --nproc_per_node N -m yolov6_sdk.cli.train ...``.
Exit status: 0 when training finished, 2 for a usage error (bad option, unusable data or checkpoint, a run
folder that cannot be written: checked before training), 130 / 143 when interrupted by SIGINT / SIGTERM (the
last finished epoch is in last.pt; a checkpoint being written is removed, never left half-written).
The training size defaults to the size the ``--teacher`` (``--qat``, ``--distill``) or ``--weights``
checkpoint was trained at, as yolov6-build builds at the checkpoint's size, else 640.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from yolov6_sdk.cli.options import CommandParser, add_deprecated_alias, add_device, parse
from yolov6_sdk.cli.outputs import check_outputs
from yolov6_sdk.cli.signals import command, interrupt_note

# option name -> TrainConfig field, for the options that map one to one
_PASS_THROUGH = (
    "model", "data", "epochs", "batch", "imgsz", "workers", "device", "out", "weights", "seed", "optimizer",
    "lr0", "lrf", "momentum", "weight_decay", "nominal_batch", "warmup_epochs", "min_warmup_iters", "ema_decay",
    "ema_tau",
    "eval_interval", "iou_type", "atss_warmup_epochs", "close_mosaic_epochs", "teacher", "temperature",
    "repopt_scales", "qat_target", "qat_calib", "cwd_weight", "cwd_temperature",
)  # fmt: skip
_AUGMENT_OPTIONS = ("mosaic", "mixup", "scale", "translate")  # AugmentConfig fields settable from the command line


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="yolov6-train", description="Train a YOLOv6 model (official recipe).")
    p.add_argument("--model", help="zoo config, e.g. yolov6n, yolov6s (default yolov6n)")
    p.add_argument("--data", help="COCO-layout root (images/{train,val}, annotations/instances_*.json) or data.yaml")
    p.add_argument("--epochs", type=int, help="epochs (default 400)")
    p.add_argument("--batch", "--bs", type=int, metavar="N", help="total batch over all processes (default 32)")
    p.add_argument("--imgsz", type=int,
                   help="square training size (default: the --teacher's or --weights' training size, else the "
                   "model's: 640, P6 1280, Lite 320)")  # fmt: skip
    p.add_argument("--workers", type=int, help="data-loading processes per training process (default 8)")
    add_device(p, default=None)
    p.add_argument("-o", "--output", dest="out", metavar="DIR",
                   help="run folder for checkpoints, results.csv and the chart (default runs/train)")  # fmt: skip
    add_deprecated_alias(p, "--out", "out", "-o/--output", metavar="DIR")
    p.add_argument("--weights", help="start from this checkpoint (ours or an official .pt); matching tensors only")
    p.add_argument("--resume", metavar="LAST_PT", help="continue the run of this last.pt from its last epoch")
    p.add_argument("--seed", type=int, help="seed of initial weights, shuffling and augmentation (default 0)")
    _add_hyper_parameters(p)
    kd = p.add_argument_group("self-distillation")
    kd.add_argument("--distill", action="store_true", help="distil from --teacher")
    kd.add_argument("--teacher", help="teacher checkpoint: the same or a larger config trained on the same data")
    kd.add_argument("--temperature", type=float, help="KD temperature (20)")
    rep = p.add_argument_group("RepOptimizer (two stages: --hyper-search, then --repopt-scales)")
    rep.add_argument(
        "--hyper-search",
        action="store_true",
        help="train the hyper-search twin of --model (default yolov6n-hs); its last.pt is the scales file",
    )
    rep.add_argument(
        "--repopt-scales",
        metavar="SCALES_PT",
        help="train --model (default yolov6n-repopt) with the RepOptimizer built from this scales file",
    )
    qat = p.add_argument_group("quantisation-aware training (fine-tunes the fused --teacher under fake INT8)")
    qat.add_argument("--qat", action="store_true",
                     help="fake-quantise the fused --teacher (or --weights) as yolov6-build places PTQ, ranges from a "
                          "calibration, and fine-tune it with channel-wise distillation from --teacher")  # fmt: skip
    qat.add_argument("--qat-target", choices=["tensorrt", "onnxruntime-cpu"],
                     help="placement and activation type: tensorrt (int8 symmetric, default) or onnxruntime-cpu "
                          "(uint8 asymmetric)")  # fmt: skip
    qat.add_argument("--qat-calib", metavar="DIR", help="calibration images (default: the training images)")
    qat.add_argument("--cwd-weight", type=float, help="weight of the channel-wise distillation term (10)")
    qat.add_argument("--cwd-temperature", type=float, help="channel-wise distillation temperature (1)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return p


def _add_hyper_parameters(p: argparse.ArgumentParser) -> None:
    """The recipe's hyper-parameters; each defaults to the official value for the model (in parentheses)."""
    hyp = p.add_argument_group("hyper-parameters (official defaults)")
    hyp.add_argument("--optimizer", choices=["sgd", "adamw"], help="sgd (official) or adamw (short runs)")
    hyp.add_argument("--lr0", type=float,
                     help="initial lr before batch scaling (SGD: yolov6n 0.02, Lite 0.4, others 0.01; AdamW 0.008)")  # fmt: skip
    hyp.add_argument("--lrf", type=float, help="final lr fraction of the cosine schedule (0.01)")
    hyp.add_argument("--momentum", type=float, help="SGD momentum or AdamW beta1 (0.937; Lite 0.9)")
    hyp.add_argument("--weight-decay", type=float, help="weight decay before batch scaling (5e-4; Lite 4e-5)")
    hyp.add_argument("--nominal-batch", type=int, help="gradients accumulate up to this batch (64)")
    hyp.add_argument("--warmup-epochs", type=float, help="warm-up length in epochs (3)")
    hyp.add_argument("--min-warmup-iters", type=int, help="minimum warm-up iterations (1000; lower for short runs)")
    hyp.add_argument(
        "--ema-decay",
        type=float,
        help="EMA decay (0.9999, a window of ~10 000 steps; 0.999 for runs of a few thousand steps)",
    )
    hyp.add_argument("--ema-tau", type=float, help="EMA ramp in optimiser steps (2000; lower for short runs)")
    hyp.add_argument("--eval-interval", type=int, help="evaluate every N epochs (20; every 3 in the last 50)")
    hyp.add_argument("--iou-type", choices=["giou", "siou", "ciou", "diou", "iou"], help="box loss (model's)")
    hyp.add_argument("--atss-warmup-epochs", type=int, help="epochs assigned by ATSS before TAL (0; P6 and Lite 4)")
    hyp.add_argument("--close-mosaic-epochs", type=int, help="last epochs without mosaic (min(15, epochs // 4))")
    hyp.add_argument("--mosaic", type=float, help="mosaic probability (1.0)")
    hyp.add_argument("--mixup", type=float, help="mixup probability (0.0; 0.1 for yolov6m/l)")
    hyp.add_argument("--scale", type=float, help="random zoom in [1 - scale, 1 + scale] (0.5)")
    hyp.add_argument("--translate", type=float, help="random shift, fraction of the image size (0.1)")
    hyp.add_argument("--no-amp", action="store_true", help="train in fp32 on CUDA too")


def _config(args: argparse.Namespace) -> object:
    from dataclasses import replace

    from yolov6_sdk.training.config import TrainConfig

    values = {name: getattr(args, name) for name in _PASS_THROUGH if getattr(args, name) is not None}
    if args.hyper_search or args.repopt_scales:
        values["model"] = _repopt_model(args)
    if args.distill:
        values["distill"] = True
    if args.qat:
        values["qat"] = True
        if args.model is None and args.teacher:  # the teacher's own model
            from yolov6_sdk.weights import load

            values["model"] = load(args.teacher).name
    if args.imgsz is None:
        values.update(_checkpoint_imgsz(args.teacher if (args.qat or args.distill) else None) or {})
        values.update((_checkpoint_imgsz(args.weights) or {}) if "imgsz" not in values else {})
    if args.no_amp:
        values["amp"] = False
    config = TrainConfig(**values)
    changes = {name: getattr(args, name) for name in _AUGMENT_OPTIONS if getattr(args, name) is not None}
    if changes:
        config = replace(config, augment=replace(config.augment_config, **changes))
    return config


def _checkpoint_imgsz(path: str | None) -> dict[str, int] | None:
    """``{"imgsz": side}`` of the square size the checkpoint at ``path`` was trained at; None without one."""
    if path is None:
        return None
    from yolov6_sdk.weights import load

    trained = load(path).imgsz
    side = max(trained) if isinstance(trained, (tuple, list)) else trained
    return {"imgsz": int(side)} if isinstance(side, int) and side > 0 else None


def _repopt_model(args: argparse.Namespace) -> str:
    """The model a RepOptimizer stage trains: --model's hyper-search twin, or --model (default yolov6n-repopt)."""
    from yolov6_sdk.errors import ConfigError
    from yolov6_sdk.models import get_config
    from yolov6_sdk.training.repopt import twin_config

    if args.hyper_search and args.repopt_scales:
        raise ConfigError(
            "--hyper-search makes a scales file and --repopt-scales uses one: run them one after the other"
        )
    if args.hyper_search:
        return twin_config(get_config(args.model or "yolov6n-hs"), "hyper_search").name
    return args.model or "yolov6n-repopt"


def _repopt_next_stage(model: str) -> str | None:
    """The RepOpt model a hyper-search ``model`` makes scales for; None for other models."""
    from yolov6_sdk.models import get_config
    from yolov6_sdk.training.repopt import twin_config

    config = get_config(model)
    return twin_config(config, "repopt").name if config.block == "hyper_search" else None


@command("yolov6-train")
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse(parser, argv)
    if args.resume is None and (args.data is None):
        parser.error("--data is required (or --resume LAST_PT to continue a run)")
    for option in ("epochs", "batch", "workers", "threads"):
        value = getattr(args, option)
        if value is not None and value < (0 if option == "workers" else 1):
            parser.error(f"--{option} {value}: expected an integer >= {0 if option == 'workers' else 1}")
    check_outputs(folders={"-o/--output": args.out})
    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 reports progress
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s")

    import torch

    from yolov6_sdk.fileio import remove_stale_temporaries
    from yolov6_sdk.training.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        overrides = {k: getattr(args, k) for k in _PASS_THROUGH if getattr(args, k) is not None}
        trainer = Trainer.resume(args.resume, progress=True, **overrides)
    else:
        trainer = Trainer(_config(args), progress=True)
    check_outputs(folders={"the run folder": trainer.out})
    remove_stale_temporaries(trainer.out)  # what a killed run was writing (its last.pt is the one before)
    if trainer.state.epoch >= trainer.config.epochs:
        print(f"{trainer.out} already finished its {trainer.config.epochs} epochs; nothing to train. To train "
              f"longer: yolov6-train --resume {args.resume} --epochs N (N > {trainer.config.epochs})")  # fmt: skip
        return 0
    interrupt_note(f"{trainer.out / 'last.pt'} holds the last finished epoch; continue with yolov6-train "
                   f"--resume {trainer.out / 'last.pt'}")  # fmt: skip
    repopt_next = _repopt_next_stage(trainer.config.model)
    summary = trainer.fit()
    if trainer.dist.main:
        print(f"finished {summary['epochs']} epochs; best mAP50-95 {summary['best_mAP50-95']:.4f}")
        print(f"weights: {summary['best']} (best), {summary['last']} (last); log: {summary['out'] / 'results.csv'}")
        if repopt_next:
            print(f"scales file: {summary['last']}; next stage: yolov6-train --repopt-scales {summary['last']} "
                  f"--model {repopt_next} ...")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

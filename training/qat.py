"""Quantisation-aware training (QAT): fine-tune a fused model under fake quantisation, distilled from its fp32 self.

The recipe of the official YOLOv6 QAT (tools/qat, configs/repopt/*_opt_qat.py), on torch's own fake-quant ops:

1. The student starts from the teacher's weights (or ``--weights``), fused: one conv per block, BatchNorm folded,
   which is the graph that gets deployed.
2. Placement and initial ranges come from a post-training calibration of that fused model: it is exported,
   calibrated and quantised exactly as ``yolov6-build`` does (MinMax over ``QAT_CALIB_IMAGES`` training images),
   and :func:`~yolov6_sdk.export.fake_quant.plan_from_qdq` reads which tensors carry Q/DQ and their scales. The
   same tensors are then fake-quantised in torch (int8 symmetric per-channel weights, per-tensor activations of
   the target's type: int8 symmetric for ``tensorrt``, uint8 asymmetric for ``onnxruntime-cpu``); activation
   scales stay fixed, as the official QAT keeps its calibrated amax, so Concat groups keep their shared scale.
3. Training adds channel-wise distillation (:mod:`training.cwd`) between the fp32 teacher's and the student's
   neck outputs to the detection loss (and to the self-distillation terms when ``--distill`` is on).

The result is an SDK checkpoint of the fused weights whose ``meta["qat"]`` holds the plan; ``yolov6-build --qat``
exports it as the Q/DQ ONNX (:func:`~yolov6_sdk.export.fake_quant.export_qat_onnx`) without calibrating again.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.evaluate import load_split
from yolov6_sdk.export import fake_quant, ort_quant
from yolov6_sdk.export.calibration import CalibrationSet, load_calibration_set
from yolov6_sdk.export.onnx import ExportOptions, export_onnx
from yolov6_sdk.models import YOLOv6, fuse
from yolov6_sdk.weights import load

from .cwd import cwd_loss
from .distill import prepare_teacher

LOGGER = logging.getLogger("yolov6_sdk.training.qat")
QAT_CALIB_IMAGES = 128  # the official calibrates on 4 batches of 32 training images
QAT_CALIB_METHOD = "minmax"  # the official n/t QAT configs calibrate with max
QAT_LR0 = 1e-5  # the official QAT learning rate (before the trainer's batch scaling)
QAT_TARGETS = tuple(ort_quant.TARGETS)


def calibrated_plan(model: YOLOv6, calib: CalibrationSet, target: str) -> fake_quant.QuantPlan:
    """The PTQ placement and ranges of the fused ``model`` for ``target``, as ``yolov6-build`` would quantise it.

    Exports ``model`` at the calibration size, calibrates with MinMax on ``calib`` and quantises with the SDK's
    Q/DQ rules (head split, shared Concat scales, float ReLUs), then reads the plan from the Q/DQ graph.
    """
    ort_quant.check_target(target)
    with tempfile.TemporaryDirectory(prefix="yolov6-qat-calib-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", ExportOptions(imgsz=calib.imgsz))
        ranges = ort_quant.calibrate(onnx.load(str(fp32)), calib, QAT_CALIB_METHOD)
        int8 = ort_quant.quantize_model(fp32, Path(tmp) / "int8.onnx", ranges, target, QAT_CALIB_METHOD)
        return fake_quant.plan_from_qdq(model, onnx.load(str(int8.path)), target)


def check_same_model(teacher: YOLOv6, student: YOLOv6, source: str) -> None:
    """Raise :class:`ConfigError` unless ``teacher`` has ``student``'s config and classes (CWD pairs channels)."""
    if teacher.config.name != student.config.name or teacher.num_classes != student.num_classes:
        raise ConfigError(
            f"{source} holds a {teacher.config.name} with {teacher.num_classes} classes, but quantisation-aware "
            f"training of a {student.config.name} with {student.num_classes} classes distils from the same model "
            "in fp32: pass its own trained checkpoint as --teacher"
        )


def calibration_folder(data: str) -> Path:
    """The folder holding every training image of ``data`` (the default calibration images)."""
    paths = [str(record.path) for record in load_split(data, "train").images]
    if not paths:
        raise ConfigError(f"{data}: the training split has no images to calibrate on")
    return Path(os.path.commonpath(paths)) if len(paths) > 1 else Path(paths[0]).parent


class QATRun:
    """What quantisation-aware training adds to a training run: the fp32 teacher, the plan and the CWD term.

    Args:
        teacher: the fp32 model, frozen by :func:`training.distill.prepare_teacher` (training-mode outputs,
            which carry the neck features).
        plan: the student's fake-quant plan (saved in the checkpoint metadata).
        weight: scale of the CWD term.
        temperature: CWD softmax temperature.
    """

    def __init__(self, teacher: YOLOv6, plan: fake_quant.QuantPlan, weight: float, temperature: float) -> None:
        self.teacher, self.plan, self.weight, self.temperature = teacher, plan, weight, temperature

    def feature_loss(self, student_neck: Sequence[torch.Tensor], teacher_neck: Sequence[torch.Tensor]) -> torch.Tensor:
        """``weight * CWD`` between the student's and the teacher's neck outputs ([B, C_i, H_i, W_i] each)."""
        return self.weight * cwd_loss(student_neck, teacher_neck, self.temperature)

    def meta(self) -> dict[str, object]:
        """Checkpoint metadata entries of a QAT model."""
        return {fake_quant.QAT_META_KEY: self.plan.to_meta()}


def prepare_qat(
    model_name: str,
    teacher_path: str,
    weights: str | None,
    data: str,
    imgsz: int,
    target: str,
    loss_settings: tuple[float, float],
    calib: str | None = None,
    names: Sequence[str] = (),
) -> tuple[nn.Module, QATRun]:
    """The fake-quantised student (fused, on the CPU) and the :class:`QATRun` of a QAT fine-tuning.

    Args:
        model_name: the run's zoo config; teacher and student must be this model.
        teacher_path: the fp32 checkpoint distilled from (and started from unless ``weights`` is given).
        weights: another checkpoint of the same model to start from, or None.
        data: the training data (its training images calibrate unless ``calib`` names a folder).
        imgsz: calibration size (the training size).
        target: "tensorrt" or "onnxruntime-cpu": the placement and activation type trained for.
        loss_settings: (CWD weight, CWD temperature).
        calib: calibration image folder, None for the training images.
        names: the dataset's class names; the teacher must have as many classes.

    Raises:
        ConfigError: a teacher or start checkpoint of another model or class count, an unknown target.
        CheckpointError: an unreadable checkpoint.
    """
    ort_quant.check_target(target)
    teacher = load(teacher_path).model
    if teacher.config.name != model_name:
        raise ConfigError(f"--teacher {teacher_path} holds a {teacher.config.name}, but the run trains {model_name}; "
                          f"pass a {model_name} checkpoint as --teacher (or drop --model)")  # fmt: skip
    if names and teacher.num_classes != len(names):
        raise ConfigError(f"--teacher {teacher_path} has {teacher.num_classes} classes but the data has {len(names)}; "
                          "quantisation-aware training fine-tunes a model trained on the same data")  # fmt: skip
    student = load(weights).model if weights else copy.deepcopy(teacher)  # the file is read and checked once
    check_same_model(teacher, student, teacher_path)
    fuse(student.eval())
    calib_set = load_calibration_set(calib or calibration_folder(data), imgsz, size=QAT_CALIB_IMAGES)
    plan = calibrated_plan(student, calib_set, target)
    fake_quant.attach(student, plan)
    LOGGER.info("QAT (%s): %d activation and %d weight quantisers, ranges from %d calibration images",
                target, len(plan.activations), len(plan.weights), len(calib_set))  # fmt: skip
    return student, QATRun(prepare_teacher(teacher), plan, *loss_settings)


__all__ = [
    "QAT_LR0",
    "QAT_TARGETS",
    "QATRun",
    "calibrated_plan",
    "calibration_folder",
    "check_same_model",
    "prepare_qat",
]

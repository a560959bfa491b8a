"""The official YOLOv6 deploy path on a CPU, rebuilt as a baseline for the latency benchmarks.

What the official repository gives a CPU user (facts from its deploy/ONNX/export_onnx.py and
yolov6/core/inferer.py; this is the project's own code written to behave the same way, not a copy):

- export: the fused, re-parameterised model traced with ``torch.onnx.export`` at opset 13 on a zero input of a
  fixed size, constant folding on, input ``images``, one output ``outputs`` ``[B, A, 5 + nc]``, then simplified
  (onnxsim there, onnxslim here: same job). No quantisation, no NMS in the graph.
- run: ONNX Runtime with default session options.
- pre-processing per image: ``cv2.imread``, letterbox into the square input (``cv2.resize`` then
  ``cv2.copyMakeBorder`` with gray 114, centred), BGR to RGB, HWC to CHW, ``np.ascontiguousarray``, ``/ 255`` to
  float32.
- post-processing per image: candidates with objectness and best class score above ``conf``, score = class
  score x objectness, centre-size to corners, best class only, NMS per class (the official code uses
  torchvision's batched NMS with a class offset; OpenCV's C++ ``NMSBoxesBatched`` does the same job here, as
  torchvision is not a dependency), at most ``max_det`` boxes, then boxes mapped back to the picture.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import onnxslim
import torch

GRAY = 114


def export_official_onnx(fused_model: torch.nn.Module, path: Path, imgsz: int, batch: int = 1) -> Path:
    """Write ``fused_model`` as the official exporter does: static ``[batch, 3, imgsz, imgsz]``, opset 13, simplified."""
    dummy = torch.zeros(batch, 3, imgsz, imgsz)
    with torch.no_grad():
        torch.onnx.export(
            fused_model.eval(),
            dummy,
            str(path),
            opset_version=13,
            do_constant_folding=True,
            input_names=["images"],
            output_names=["outputs"],
            dynamo=False,
        )
    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))
    return path


def letterbox_official(image: np.ndarray, imgsz: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize ``image`` (H, W, 3 BGR uint8) into an ``imgsz`` square with centred gray padding.

    Returns the padded image, the scale (input pixels per picture pixel) and the (left, top) padding in pixels.
    """
    h, w = image.shape[:2]
    ratio = min(imgsz / h, imgsz / w)
    new_w, new_h = round(w * ratio), round(h * ratio)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_w, pad_h = (imgsz - new_w) / 2, (imgsz - new_h) / 2
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(GRAY, GRAY, GRAY))
    return image, ratio, (pad_w, pad_h)


class OfficialDeployPipeline:
    """JPEG path in, ``(boxes [N, 4] x1y1x2y2 picture pixels, scores [N], classes [N])`` out, the official way."""

    def __init__(self, onnx_path: Path, imgsz: int, conf: float = 0.25, iou: float = 0.45, max_det: int = 1000):
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.imgsz, self.conf, self.iou, self.max_det = imgsz, conf, iou, max_det

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        """BGR uint8 picture -> ``[1, 3, imgsz, imgsz]`` float32 in [0, 1], scale, padding."""
        padded, ratio, pad = letterbox_official(image, self.imgsz)
        chw = np.ascontiguousarray(padded.transpose(2, 0, 1)[::-1])
        return (chw.astype(np.float32) / 255.0)[None], ratio, pad

    def postprocess(
        self, raw: np.ndarray, ratio: float, pad: tuple[float, float], shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``raw`` ``[A, 5 + nc]`` of one image -> boxes, scores, classes in picture pixels."""
        keep = (raw[:, 4] > self.conf) & (raw[:, 5:].max(axis=1) > self.conf)
        cand = raw[keep]
        scores_all = cand[:, 5:] * cand[:, 4:5]
        classes = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(len(cand)), classes]
        above = scores > self.conf
        cand, classes, scores = cand[above], classes[above], scores[above]
        xywh = cand[:, :4].copy()
        xywh[:, :2] -= xywh[:, 2:] / 2  # top-left corner, width, height: what OpenCV's NMS takes
        picked = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), self.conf, self.iou)
        picked = np.asarray(picked, dtype=np.int64).reshape(-1)[: self.max_det]
        boxes = xywh[picked]
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad[0]) / ratio).clip(0, shape[1])
        boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad[1]) / ratio).clip(0, shape[0])
        return boxes, scores[picked], classes[picked]

    def __call__(self, path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = cv2.imread(str(path))
        tensor, ratio, pad = self.preprocess(image)
        raw = self.session.run(None, {"images": tensor})[0]
        return self.postprocess(raw[0], ratio, pad, image.shape[:2])

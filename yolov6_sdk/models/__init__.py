"""YOLOv6 networks: ``build_model(name, num_classes)`` and ``fuse(model)``. Torch modules only."""

from __future__ import annotations

from torch import nn

from yolov6_sdk.models.model import YOLOv6
from yolov6_sdk.models.zoo import ZOO, ModelConfig, get_config


def build_model(name: str, num_classes: int = 80, deploy: bool = False) -> YOLOv6:
    """Build the zoo config ``name`` (see :data:`ZOO`) with ``num_classes`` classes.

    ``deploy=True`` builds the fused form directly (RepVGG blocks as one 3x3 conv, BN folded), which is what a
    fused checkpoint's state_dict fits. Raises :class:`~yolov6_sdk.errors.ConfigError` for an unknown name.
    """
    return YOLOv6(get_config(name), num_classes, deploy=deploy)


def fuse(model: nn.Module) -> nn.Module:
    """Reparameterise ``model`` in place for inference and return it.

    Walks the modules parents-first and calls each block's own ``fuse()`` (RepVGG branches -> one 3x3 conv,
    BatchNorm folded into its conv). Idempotent. The outputs are unchanged within float rounding.
    """
    for module in list(model.modules()):
        fuse_block = getattr(module, "fuse", None)
        if module is not model and callable(fuse_block):
            fuse_block()
    return model


__all__ = ["ZOO", "ModelConfig", "YOLOv6", "build_model", "fuse", "get_config"]

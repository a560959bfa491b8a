"""What a network's state_dict does not say about it: its activations and its parameter-free block variants.

Two networks can have identical state_dict keys and shapes and still compute different functions: YOLOv6-L
(SiLU) and YOLOv6-L-base (ReLU), or the two QARepVGG block versions. :func:`structure_signature` records exactly
those differences, in a form that the modules of an official release file (restored as inert shells whose class
names are the official ones) and this package's own modules both give: activation layers by the module that owns
them, and the distinguishing blocks by path. Activation attribute names differ between implementations (``act``,
``relu``, ``nonlinearity``), so an activation is keyed by its owner's path, never by its own name.
"""

from __future__ import annotations

from torch import nn

ACTIVATION_TYPES = frozenset({"ReLU", "SiLU", "Hardswish", "Hardsigmoid", "Sigmoid", "LeakyReLU", "ReLU6", "GELU"})
"""Class names of the activation layers a signature records (an ``Identity`` is no activation)."""
VARIANT_BLOCKS = frozenset({"QARepVGGBlock", "QARepVGGBlockV2"})
"""Blocks whose class alone tells them apart from a block with the same tensors."""


def structure_signature(model: nn.Module) -> dict[str, str]:
    """``{owner path: activation class names joined by "+" in sorted order}`` for every module holding an
    activation layer, plus ``{"<path> class": name}`` for every block of :data:`VARIANT_BLOCKS`.

    Shared activation instances are counted once per place they are registered (the official code reuses one
    ``nn.ReLU()`` object across many modules). The top-level module's path is ``""``.
    """
    owned: dict[str, list[str]] = {}
    signature: dict[str, str] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        kind = type(module).__name__
        if kind in ACTIVATION_TYPES:
            owned.setdefault(path.rpartition(".")[0], []).append(kind)
        elif kind in VARIANT_BLOCKS:
            signature[f"{path} class"] = kind
    signature.update({owner: "+".join(sorted(kinds)) for owner, kinds in owned.items()})
    return signature


def signature_difference(found: dict[str, str], expected: dict[str, str], limit: int = 3) -> list[str]:
    """Readable lines ``"<where>: <found> where <expected> was expected"`` for the first ``limit`` differences."""
    lines = []
    for where in sorted(found.keys() | expected.keys()):
        if found.get(where) != expected.get(where):
            lines.append(f"{where or 'model'}: {found.get(where, 'none')} (expected {expected.get(where, 'none')})")
            if len(lines) == limit:
                break
    return lines

"""Anchor points of the anchor-free head.

One point per feature-map cell, at the cell centre (offset 0.5 grid units, as the official head uses),
ordered level by level (P3, P4, P5) and row-major inside a level (y outer, x inner).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def make_anchor_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    offset: float = 0.5,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell-centre anchor points for every level.

    Args:
        feature_sizes: (H_i, W_i) of each level's feature map.
        strides: input pixels per cell of each level (8, 16, 32 for P5 models).
        offset: position of the point inside its cell, in grid units.

    Returns:
        points: Tensor[A, 2], (x, y) in **grid units** of the point's own level (multiply by ``stride_per_point``
            for input pixels); A = sum(H_i * W_i).
        stride_per_point: Tensor[A, 1], the stride of each point's level.
    """
    points, point_strides = [], []
    for (h, w), stride in zip(feature_sizes, strides, strict=True):
        ys = torch.arange(h, device=device, dtype=dtype) + offset
        xs = torch.arange(w, device=device, dtype=dtype) + offset
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))
        point_strides.append(torch.full((h * w, 1), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(point_strides)


def anchor_boxes_for_atss(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    cell_size: float = 5.0,
    offset: float = 0.5,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Square anchor boxes used only by the ATSS assigner during warm-up.

    Returns:
        boxes: Tensor[A, 4] xyxy in input pixels, squares of side ``cell_size * stride`` centred on the points.
        points: Tensor[A, 2] point centres in input pixels.
        counts: number of points per level, for per-level top-k.
    """
    points, stride_per_point = make_anchor_points(feature_sizes, strides, offset, device)
    centres = points * stride_per_point
    half = cell_size * stride_per_point / 2
    boxes = torch.cat((centres - half, centres + half), dim=-1)
    return boxes, centres, [h * w for h, w in feature_sizes]

"""Pixels between their two forms: uint8 as files and stores hold them, and float in [-1, 1] as networks see
them (the range of every image in ``ganzoo.api.interfaces``)."""

from __future__ import annotations

import torch

QUANTISATION = "generated images rounded to uint8: round((x + 1) * 127.5), ganzoo.runtime.pixels.to_uint8"
"""How generated images become pixels, recorded in every score's protocol."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 pixels, as a PNG would store them: round((x + 1) * 127.5)."""
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def to_float(batch_uint8: torch.Tensor, device, memory_format=torch.contiguous_format) -> torch.Tensor:
    """uint8 (B, S, S, 3) to float (B, 3, S, S) in [-1, 1] on ``device``."""
    images = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return images.contiguous(memory_format=memory_format)

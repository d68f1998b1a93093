"""Upscalers by resampling (Pillow's filters): larger covers, not more detail. A learned super-resolution network
is a plugin of the same kind."""

from __future__ import annotations

from PIL import Image

from ganzoo import GanzooError, Upscaler, hookimpl

FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
           "nearest": Image.Resampling.NEAREST}


class Resampling(Upscaler):
    """Resizes with one of Pillow's filters (Lanczos: the sharpest of them without ringing artefacts to speak of
    on smooth covers; nearest: visible pixels, on purpose)."""

    def __init__(self, name: str):
        self.name = name

    def upscale(self, image: Image.Image, size: int) -> Image.Image:
        if size < image.width:
            raise GanzooError(f"an upscaler makes covers larger; {size} px is smaller than the {image.width} px cover")
        return image.convert("RGB").resize((size, size), FILTERS[self.name])


@hookimpl
def register_upscalers(register):
    register("lanczos", lambda options: Resampling("lanczos"), default=True,
             description="Lanczos resampling (sharp, smooth edges)")
    register("bicubic", lambda options: Resampling("bicubic"), description="bicubic resampling (softer)")
    register("nearest", lambda options: Resampling("nearest"), description="nearest neighbour (blocky pixels)")

"""Duplicate covers: exact (identical pixels after cleaning) and near (perceptual hashes a few bits apart and
similar colours: pHash reads only luminance, so a red and a blue cover of one layout hash alike)."""

from __future__ import annotations

import hashlib

import imagehash
import numpy as np
from PIL import Image

HASH_BITS = 64
THUMBNAIL_SIDE = 4
COLOUR_TOLERANCE = 24.0
"""Largest mean absolute difference (0-255) between two 4x4 colour thumbnails that still counts as near."""


def pixel_digest(pixels: np.ndarray) -> bytes:
    """Identifies an image by its cleaned pixels: re-encoded copies that decode identically share it."""
    return hashlib.blake2b(pixels.tobytes(), digest_size=16).digest()


def perceptual_hash(pixels: np.ndarray) -> int:
    """imagehash's 64-bit DCT hash (pHash) of a cleaned image, as an integer."""
    bits = imagehash.phash(Image.fromarray(pixels)).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def colour_thumbnail(pixels: np.ndarray) -> np.ndarray:
    """The mean colour of each cell of a 4x4 grid (float32, 4x4x3); the image side must divide by 4."""
    side = pixels.shape[0] // THUMBNAIL_SIDE
    return pixels.reshape(THUMBNAIL_SIDE, side, THUMBNAIL_SIDE, side, 3).mean(axis=(1, 3), dtype=np.float32)


def cover_signature(pixels: np.ndarray) -> tuple[bytes, int, np.ndarray]:
    """What duplicate detection keeps of a cleaned cover: pixel digest, pHash, colour thumbnail."""
    return pixel_digest(pixels), perceptual_hash(pixels), colour_thumbnail(pixels)


class NearDuplicateIndex:
    """Remembers covers and finds an earlier one whose pHash is within ``max_distance`` bits (Hamming distance)
    and whose colour thumbnail is within COLOUR_TOLERANCE.

    Multi-index hashing: each hash is cut into ``max_distance // 2 + 1`` blocks, so two hashes at most
    ``max_distance`` bits apart differ in at most one bit of some block. A lookup probes each block's key and
    its one-bit neighbours, and compares only the hashes found there. At distance 4 (three blocks of 21-22 bits)
    a million random hashes leave about 0.5 per bucket, so a lookup stays tens of microseconds.
    """

    def __init__(self, max_distance: int):
        self.max_distance = max_distance
        edges = np.linspace(0, HASH_BITS, max_distance // 2 + 2).astype(int)
        self.blocks = [(int(low), int(high - low)) for low, high in zip(edges[:-1], edges[1:])]
        self.tables: list[dict[int, list[tuple[int, np.ndarray | None]]]] = [{} for _ in self.blocks]

    def add_unless_near(self, value: int, thumbnail: np.ndarray | None = None) -> bool:
        """Add the cover and return True, or return False when an earlier one is near it."""
        keys = [(value >> shift) & ((1 << width) - 1) for shift, width in self.blocks]
        for table, key, (_, width) in zip(self.tables, keys, self.blocks):
            for probe in (key, *(key ^ (1 << bit) for bit in range(width))):
                for other, other_thumbnail in table.get(probe, ()):
                    if (value ^ other).bit_count() <= self.max_distance and (
                            thumbnail is None or np.abs(thumbnail - other_thumbnail).mean() <= COLOUR_TOLERANCE):
                        return False
        for table, key in zip(self.tables, keys):
            table.setdefault(key, []).append((value, thumbnail))
        return True

"""Datasets: cleaning image folders into packed stores (``prepare``), reading stores (``store``), and opening a
dataset by name, store or folder (``sources.open_dataset``). Importing this package loads none of them."""

DEFAULT_MAX_HASH_DISTANCE = 4
"""``ganzoo data prepare`` drops a cover whose perceptual hash is within this many bits of an earlier one's."""

"""Bounds on user input, shared by the command line, configs and the studio (importing this loads nothing)."""

MAX_SEED = 2 ** 31 - 1
"""The largest seed: every seed goes to torch, numpy and the studio's query string."""

MAX_UPSCALE = 16
"""The largest factor covers are written larger by (``generate --upscale``, the studio's downloads)."""
RESAMPLING_FILTERS = ("lanczos", "bicubic", "nearest")
"""Resampling filters for upscaled covers, the default first."""

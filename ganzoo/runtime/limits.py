"""Bounds on user input, shared by the command line, configs and the studio (importing this loads nothing)."""

MAX_SEED = 2 ** 31 - 1
"""The largest seed: every seed goes to torch, numpy and the studio's query string."""

MAX_UPSCALE = 16
"""The largest factor covers are written larger by (``generate --upscale``, the studio's downloads)."""
RESAMPLING_FILTERS = ("lanczos", "bicubic", "nearest")
"""Resampling filters for upscaled covers, the default first."""
MAX_COVER_SIZE = 4096
"""The largest side of a finished cover (``generate --size``): distributors ask for 3000 px."""
MAX_JPEG_BYTES = 10 * 2 ** 20
"""Distributors' limit on a cover's file (10 MB): JPEG quality steps down until a cover fits it."""
LAYOUTS = ("auto", "top", "bottom", "centre")
"""Where lettering goes on a cover: auto (the flattest of several rows), or a fixed row."""
MAX_SONG_BYTES = 256 * 2 ** 20
"""The largest song the studio takes as an upload (ten minutes of 48 kHz, 24-bit stereo WAV are 173 MB)."""

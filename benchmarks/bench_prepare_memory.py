"""Peak memory of `ganzoo data prepare` on images whose small files declare huge canvases.

Writes a folder with a 12500 x 12500 RGB PNG and a 12500 x 12500 16-bit greyscale PNG (a few hundred KB each,
since they compress to almost nothing) and one ordinary 64 px JPEG, then runs `python -m ganzoo data prepare`
on it in a child process and reports the child's peak resident memory, wall time and what it kept. A second
run on the ordinary file alone gives the floor (the interpreter with torch imported).

    python benchmarks/bench_prepare_memory.py
    PYTHONPATH=/path/to/old/checkout:/path/to/old/checkout/plugins python benchmarks/bench_prepare_memory.py
    python benchmarks/bench_prepare_memory.py --smoke      # 5,000 px canvases: that the script still runs
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image

from runner import peak_of


def peak_of_prepare(folder: Path, out: Path) -> dict:
    """Run prepare in a fresh child that reports its own peak RSS, and what it kept and dropped."""
    result = peak_of(["data", "prepare", folder, "--size", "64", "--out", out, "--workers", "1"], folder.parent)
    kept = next((line for line in result["output"] if line.startswith("kept")), "")
    dropped = next((line for line in result["output"] if line.startswith("dropped")), "")
    return {"peak_rss_mib": result["peak_rss_mib"], "seconds": result["seconds"], "kept": kept, "dropped": dropped,
            "exit_code": result["exit_code"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=12500, help="side of the huge canvases, in pixels")
    parser.add_argument("--smoke", action="store_true", help="5,000 px canvases: seconds")
    args = parser.parse_args()
    side = 5000 if args.smoke else args.side
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        nasty, ordinary = root / "nasty", root / "ordinary"
        nasty.mkdir()
        ordinary.mkdir()
        Image.new("RGB", (side, side), (30, 60, 90)).save(nasty / "huge_rgb.png", compress_level=9)
        Image.new("I;16", (side, side), 1000).save(nasty / "huge_16bit.png", compress_level=9)
        Image.new("RGB", (64, 64), (200, 40, 40)).save(ordinary / "ordinary.jpg", quality=90)
        Image.new("RGB", (64, 64), (200, 40, 40)).save(nasty / "ordinary.jpg", quality=90)
        sizes = {p.name: p.stat().st_size for p in nasty.iterdir()}
        report = {"file_bytes": sizes,
                  "nasty_folder": peak_of_prepare(nasty, root / "store-nasty"),
                  "ordinary_file_only": peak_of_prepare(ordinary, root / "store-ordinary")}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

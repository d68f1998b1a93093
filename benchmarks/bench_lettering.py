"""Do lettered covers read? Covers from one run, finished at 3000 px with a title and an artist (`generate
--size 3000 --title ... --artist ...`'s path), read back by an OCR engine (tesseract, Debian's
`tesseract-ocr`): the share whose title is recovered (case-insensitive, at most one character wrong), every
placement's contrast, and the seconds and peak memory of finishing one cover.

    python benchmarks/bench_lettering.py RUN --covers 100 --size 3000 --out lettering.json
    python benchmarks/bench_lettering.py --smoke      # a tiny run made here: that the script runs

Tesseract reads a copy at 1000 px (what a person sees of a cover on a screen); the cover is lettered at full size.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ganzoo.apps import toolkit
from runner import runs_parser, tiny_run

WORDS = ("midnight drive velvet echo summer rain golden hour neon city paper moon silver lake electric dreams "
         "ocean blue broken wings northern lights wild heart slow motion glass house dancing shadows fire river "
         "lonely road crystal sky empty rooms falling stars secret garden morning coffee city lights black roses "
         "distant thunder sweet escape lost signal quiet storm").split()
READ_SIDE = 1000


def titles(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (title, artist) pairs of two and three words each, capitalised."""
    rng = random.Random(seed)
    return [(" ".join(rng.sample(WORDS, 2)).title(), "The " + " ".join(rng.sample(WORDS, 2)).title())
            for _ in range(count)]


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def read_text(image, scratch: Path) -> str:
    """What tesseract reads on ``image`` (sparse text mode), at ``READ_SIDE`` px."""
    path = scratch / "read.png"
    image.resize((READ_SIDE, READ_SIDE)).save(path)
    return subprocess.run(["tesseract", str(path), "stdout", "--psm", "11"], capture_output=True, text=True,
                          check=True).stdout


def recovered(title: str, text: str) -> bool:
    """Whether ``text`` holds ``title`` with at most one character wrong (case and spacing ignored)."""
    wanted = "".join(title.lower().split())
    read = "".join(text.lower().split())
    return any(edit_distance(wanted, read[start:start + length]) <= 1
               for length in range(max(1, len(wanted) - 1), len(wanted) + 2)
               for start in range(0, max(1, len(read) - length + 1)))


def legibility(run: Path, covers: int, size: int, seed: int) -> dict:
    sampler = toolkit.load_sampler(run, torch.device("cpu"))
    upscaler = toolkit.get_registry().create("upscaler", "lanczos", None)
    images, _ = sampler.covers(covers, seed, {})
    arrays = images.permute(0, 2, 3, 1).numpy()
    rows, seconds = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for array, (title, artist) in zip(arrays, titles(covers, seed)):
            started = time.perf_counter()
            image, placement = toolkit.finished_cover(array, size, upscaler, title, artist)
            seconds.append(time.perf_counter() - started)
            text = read_text(image, Path(scratch))
            rows.append({"title": title, "read": " ".join(text.split()), "recovered": recovered(title, text),
                         "contrast": round(placement.contrast, 2), "band_opacity": placement.band[1]})
    return {"run": str(run), "covers": covers, "size": size, "read_at": READ_SIDE,
            "titles_recovered": sum(row["recovered"] for row in rows) / len(rows),
            "lowest_contrast": min(row["contrast"] for row in rows),
            "banded": sum(row["band_opacity"] > 0 for row in rows) / len(rows),
            "seconds_per_cover_median": sorted(seconds)[len(seconds) // 2],
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "missed": [row for row in rows if not row["recovered"]]}


def main() -> None:
    parser = runs_parser(__doc__)
    parser.add_argument("--covers", type=int, default=100)
    parser.add_argument("--size", type=int, default=3000)
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            result = legibility(tiny_run(Path(scratch) / "run"), 2, 600, 0)
            print(json.dumps({key: value for key, value in result.items() if key != "missed"}))
        return
    for run in args.runs:
        result = legibility(run, args.covers, args.size, args.seed)
        print(json.dumps({key: value for key, value in result.items() if key != "missed"}))
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

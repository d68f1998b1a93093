"""Does a run's sample grid show the variety of its data? KID against the run's own training data, and the spread
of each cover's mean colour (the first thing a collapsed model loses: the quick start's grid was two colours),
generated against real, at the run's size.

    python benchmarks/bench_variety.py runs/quickstart --generated 1000 --out variety.json
    python benchmarks/bench_variety.py --smoke      # a tiny run made here: that the script runs

Colour figures, each for generated and for real covers: the standard deviation over covers of their mean colour
(per RGB channel, in 0-255, averaged), how many of 12 hue sectors hold at least 2% of the covers (a cover's hue
is that of its mean colour; greys count in none), and colour coverage: the share of real covers whose mean
colour lies within r of some generated cover's, r being the median distance from a real cover to its nearest
other real cover (1.0: every kind of colour the data has, the generator makes).
"""

from __future__ import annotations

import colorsys
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganzoo.apps import toolkit
from runner import report, runs_parser, tiny_run

HUE_SECTORS = 12
OCCUPIED = 0.02


def mean_colours(images: np.ndarray) -> np.ndarray:
    """uint8 covers (N, S, S, 3) -> their mean colours (N, 3) in 0-255."""
    return images.reshape(len(images), -1, 3).mean(axis=1)


def hue_sectors(colours: np.ndarray) -> int:
    """How many of ``HUE_SECTORS`` hue sectors hold at least ``OCCUPIED`` of the covers' mean colours."""
    counts = np.zeros(HUE_SECTORS)
    for r, g, b in colours / 255:
        hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
        if saturation > 0.15 and 0.1 < lightness < 0.9:
            counts[int(hue * HUE_SECTORS) % HUE_SECTORS] += 1
    return int((counts >= OCCUPIED * len(colours)).sum())


def coverage(real: np.ndarray, fake: np.ndarray) -> float:
    """Share of real mean colours within the real set's median nearest-neighbour distance of a generated one."""
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    between = torch.cdist(real_t, real_t)
    between.fill_diagonal_(float("inf"))
    radius = between.min(dim=1).values.median()
    return float((torch.cdist(real_t, fake_t).min(dim=1).values <= radius).float().mean())


def variety(run: Path, generated: int, seed: int, with_kid: bool = True) -> dict:
    sampler = toolkit.load_sampler(run, torch.device("cpu"))
    fake = torch.cat(list(sampler.generate(generated, seed))).permute(0, 2, 3, 1).numpy()
    data = toolkit.training_data(run, wanted=generated)
    real = data.images[np.random.default_rng(seed).permutation(len(data.images))[:generated]]
    fake_colours, real_colours = mean_colours(fake), mean_colours(np.asarray(real))
    result = {"run": str(run), "step": sampler.step, "image_size": sampler.image_size, "generated": len(fake),
              "real": len(real),
              "colour_std": {"generated": float(fake_colours.std(axis=0).mean()),
                             "real": float(real_colours.std(axis=0).mean())},
              "hue_sectors": {"generated": hue_sectors(fake_colours), "real": hue_sectors(real_colours)},
              "colour_coverage": coverage(real_colours, fake_colours)}
    if with_kid:
        config = toolkit.checkpoint_config(toolkit.load_checkpoint(run))
        bench = toolkit.run_bench(str(run), ("kid",), config.data.name, generated, generated, seed, None,
                                  config.options, torch.device("cpu"), progress=False)
        result["kid_vs_training_data"] = bench["scores"]["kid_mean"]
    return result


def main() -> None:
    parser = runs_parser(__doc__)
    parser.add_argument("--generated", type=int, default=1000)
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            print(json.dumps(variety(tiny_run(Path(scratch) / "run"), 16, 0, with_kid=False)))
        return
    results = [variety(run, args.generated, args.seed) for run in args.runs]
    report(results, args.out)


if __name__ == "__main__":
    main()

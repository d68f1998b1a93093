"""synthcovers: rendering and measuring speed (images/s, one process) and how well features measure back.

    python benchmarks/bench_synthcovers.py --count 2000
    python benchmarks/bench_synthcovers.py --smoke      # 50 covers: that the script still runs
"""

import argparse
import json
import platform
import time

import numpy as np
from scipy.stats import spearmanr

from ganzoo_synthcovers import DRIVEN_FEATURES, measure_features, render, sample_features


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="50 covers: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.count = 50
    features = sample_features(args.count, args.seed)
    report = {"machine": platform.processor() or platform.machine(), "count": args.count, "sizes": {}}
    for size in (32, 64, 128):
        start = time.perf_counter()
        images = render(features, size, seed=args.seed)
        rendered = time.perf_counter() - start
        start = time.perf_counter()
        measured = measure_features(images)
        measuring = time.perf_counter() - start
        report["sizes"][size] = {
            "render_images_per_s": round(args.count / rendered),
            "measure_images_per_s": round(args.count / measuring),
            "spearman": {k: round(float(spearmanr(features[k], measured[k])[0]), 3) for k in DRIVEN_FEATURES},
            "median_abs_error": {k: round(float(np.median(np.abs(features[k] - measured[k]))), 3)
                                 for k in DRIVEN_FEATURES},
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

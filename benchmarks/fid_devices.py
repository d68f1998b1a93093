"""FID of the same images on two devices: the generated covers are made once, then their Inception features and
the reference's are extracted on each device, and each device's FID is computed from its own features.

    python benchmarks/fid_devices.py RUN --ref STORE -n 1000 --real 1000 --devices cuda cpu

Prints one JSON line: each device's FID and the relative difference of each from the first.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from ganzoo.data.sources import open_dataset
from ganzoo.evaluation import batches_of, build_extractor, extract, pick
from ganzoo.plugins import get_registry
from ganzoo.sampling import load_sampler
from ganzoo_metrics import frechet_distance


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--ref", required=True)
    parser.add_argument("-n", "--generated", type=int, default=1000)
    parser.add_argument("--real", type=int, default=1000)
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    args = parser.parse_args()
    registry = get_registry()
    sampler = load_sampler(args.run, torch.device(args.devices[0]), registry)
    fake = torch.cat(list(sampler.generate(args.generated, seed=0, batch_size=64)))
    reference = open_dataset(args.ref, sampler.image_size, registry, progress=False)
    real = reference.images[pick(len(reference.images), args.real, 0)]
    scores = {}
    for name in args.devices:
        device = torch.device(name)
        extractor = build_extractor("inception", {}, registry, device)
        fake_features, _ = extract(extractor, fake.split(64), len(fake), device, False, f"generated on {name}",
                                   progress=False)
        real_features, _ = extract(extractor, batches_of(real, np.arange(len(real))), len(real), device, False,
                                   f"reference on {name}", progress=False)
        scores[name] = frechet_distance(real_features, fake_features)
    first = scores[args.devices[0]]
    print(json.dumps({"benchmark": "fid on devices", "generated": len(fake), "real": len(real), "fid": scores,
                      "relative_difference": {k: abs(v - first) / first for k, v in scores.items()}}))


if __name__ == "__main__":
    main()

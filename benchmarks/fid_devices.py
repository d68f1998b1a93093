"""FID of the same images on two devices: the generated covers are made once, then their Inception features and
the reference's are extracted on each device, and each device's FID is computed from its own features.

    python benchmarks/fid_devices.py RUN --ref STORE -n 1000 --real 1000 --devices cuda cpu
    python benchmarks/fid_devices.py --smoke      # a tiny run on the CPU twice: that the script still runs

Prints one JSON line: each device's FID and the relative difference of each from the first.
"""

from __future__ import annotations

import argparse
import json

import torch

import tempfile
from pathlib import Path

from ganzoo.apps import toolkit
from ganzoo_metrics import frechet_distance
from runner import tiny_run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?")
    parser.add_argument("--ref")
    parser.add_argument("-n", "--generated", type=int, default=1000)
    parser.add_argument("--real", type=int, default=1000)
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="a tiny run, 8 images, the CPU twice: seconds")
    args = parser.parse_args()
    if not args.smoke:
        return compare_devices(args)
    with tempfile.TemporaryDirectory() as scratch:
        args.run, args.ref = tiny_run(Path(scratch) / "run"), None
        args.generated, args.real, args.devices = 8, 8, ["cpu", "cpu"]
        compare_devices(args)


def compare_devices(args):
    registry = toolkit.get_registry()
    sampler = toolkit.load_sampler(args.run, torch.device(args.devices[0]), registry)
    fake = torch.cat(list(sampler.generate(args.generated, seed=0, batch_size=64)))
    reference = toolkit.open_dataset(args.ref, sampler.image_size, registry, wanted=args.real, progress=False)
    real = reference.images[toolkit.Reference(reference, args.real, 0).indices]
    scores = {}
    for name in args.devices:
        device = torch.device(name)
        extractor = toolkit.extractor(device=device)
        fake_features = toolkit.features(extractor, fake.split(64), device, len(fake))
        real_features = toolkit.features(extractor, real, device)
        scores[name] = frechet_distance(real_features, fake_features)
    first = scores[args.devices[0]]
    print(json.dumps({"benchmark": "fid on devices", "generated": len(fake), "real": len(real), "fid": scores,
                      "relative_difference": {k: abs(v - first) / first for k, v in scores.items()}}))


if __name__ == "__main__":
    main()

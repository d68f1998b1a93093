"""FID noise floor and ceiling on real covers, and feature-extraction throughput, with the real Inception.

- Noise floor: FID between two disjoint random halves of a prepared cover store.
- Ceiling: FID of a freshly initialised 64 px DCGAN generator (seed 0) against the first half, same count.
- Throughput: ganzoo's extraction (batched, inference mode, channels_last) against feeding the same images to
  torchmetrics' own FrechetInceptionDistance.update with the same network as its feature module, alternating.

    python benchmarks/bench_metrics.py ../shared/data/covers64 --throughput-images 256
    python benchmarks/bench_metrics.py --smoke      # 32 covers made here: that the script still runs
"""

import argparse
import json
import platform
import time

import numpy as np
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

import tempfile
from pathlib import Path

from ganzoo import ArchitectureSpec
from ganzoo.apps import toolkit
from ganzoo_dcgan import DCGAN, DCGANOptions
from ganzoo_metrics import frechet_distance


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--throughput-images", type=int, default=256)
    parser.add_argument("--skip-fid", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="32 covers made here, at 16 px: seconds")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            args.folder = toolkit.write_cover_folder(Path(scratch) / "covers", 32, 16)
            args.size, args.throughput_images = 16, 8
            report_metrics(args)
    else:
        report_metrics(args)


def report_metrics(args):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    store, _ = toolkit.prepare(args.folder, args.size, progress=False)
    data = toolkit.load_store(store)
    extractor = toolkit.extractor(device=device)
    batches_of, extract, to_uint8 = toolkit.batches_of, toolkit.extract, toolkit.to_uint8
    report = {"machine": torch.cuda.get_device_name() if device.type == "cuda" else
              f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "store": str(store), "images": len(data.images),
              "extractor": extractor.protocol}

    order = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(0)).numpy()
    half = len(order) // 2
    first, second = np.sort(order[:half]), np.sort(order[half:2 * half])

    if not args.skip_fid:
        a, _ = extract(extractor, batches_of(data.images, first, 64), half, device, False, "half A")
        b, _ = extract(extractor, batches_of(data.images, second, 64), half, device, False, "half B")
        generator, _ = DCGAN(DCGANOptions()).build(ArchitectureSpec(image_size=args.size, latent_dim=128, width=64))
        generator = generator.to(device).eval()
        latents = torch.Generator().manual_seed(0)

        def generated():
            with torch.no_grad():
                for start in range(0, half, 64):
                    z = torch.randn(min(64, half - start), 128, generator=latents).to(device)
                    yield to_uint8(generator(z))

        fresh, _ = extract(extractor, generated(), half, device, False, "fresh generator")
        report["fid_half_vs_half"] = frechet_distance(a, b)
        report["fid_fresh_generator_vs_half"] = frechet_distance(a, fresh)
        report["images_per_half"] = half

    sample = first[:args.throughput_images]
    rates = {"ganzoo_extract": [], "torchmetrics_update": []}
    for _ in range(2):
        start = time.perf_counter()
        extract(extractor, batches_of(data.images, sample, 64), len(sample), device, False, "ganzoo",
                progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates["ganzoo_extract"].append(len(sample) / (time.perf_counter() - start))
        metric = FrechetInceptionDistance(feature=extractor).to(device)
        start = time.perf_counter()
        for batch in batches_of(data.images, sample, 64):
            metric.update(batch.to(device), real=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates["torchmetrics_update"].append(len(sample) / (time.perf_counter() - start))
    report["throughput_images_per_s"] = {k: [round(v, 2) for v in vs] for k, vs in rates.items()}
    report["throughput_ratio_ganzoo_over_torchmetrics"] = round(
        max(rates["ganzoo_extract"]) / max(rates["torchmetrics_update"]), 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

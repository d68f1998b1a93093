"""Covers from a lightweight-gan checkpoint, one PNG each, for `ganzoo bench FOLDER`: its own CLI writes grids.

    python benchmarks/peers/lightweight_gan_images.py --models-dir MODELS --name NAME --image-size 256 -n 2000 \\
        --out FOLDER

Loads the newest checkpoint of run NAME with lightweight-gan's own Trainer (a GPU program: it asserts CUDA at
import) and writes ``-n`` covers of its EMA generator, as its grids show them: clamped to [0, 1].
"""

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--results-dir", default="/tmp/lightweight-gan-results")
    parser.add_argument("--name", required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("-n", "--count", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from lightweight_gan.lightweight_gan import Trainer

    trainer = Trainer(name=args.name, models_dir=args.models_dir, results_dir=args.results_dir,
                      image_size=args.image_size, use_aim=False)
    trainer.load(-1)
    args.out.mkdir(parents=True, exist_ok=True)
    generator = trainer.GAN.GE.eval()
    with torch.no_grad():
        for start in range(0, args.count, 64):
            latents = torch.randn(min(64, args.count - start), trainer.GAN.latent_dim).cuda()
            for i, image in enumerate(generator(latents).clamp(0, 1)):
                save_image(image, args.out / f"{start + i:05d}.png")


if __name__ == "__main__":
    main()

"""Do generated covers look like the playlist they were asked for? A linear probe on Inception features.

An independent classifier (multinomial logistic regression on the real Inception's pool3 features, standardised)
is trained on the real covers of a prepared store with a genre column. Its own skill is its k-fold accuracy on
held-out real covers. It then labels covers that a genre-conditional checkpoint generated for each genre in turn
(--per-genre each), and the same number generated for genres shuffled among them (the generator asked for one
genre, scored against another: the chance level of this set-up), beside 1 / number of genres.

    python benchmarks/bench_genre_probe.py RUN_DIR --store STORE [--column playlist_name] [--per-genre 20]
    python benchmarks/bench_genre_probe.py --smoke      # a tiny store and run made here: that the script runs
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch
import torch.nn.functional as F

import tempfile
from pathlib import Path

from ganzoo.apps import toolkit
from runner import ganzoo, tiny_run

DEVICE = torch.device("cpu")


def fit_probe(features: torch.Tensor, labels: torch.Tensor, classes: int, weight_decay: float) -> torch.nn.Linear:
    """Multinomial logistic regression by L-BFGS, on features already standardised."""
    probe = torch.nn.Linear(features.shape[1], classes, dtype=features.dtype)
    optimiser = torch.optim.LBFGS(probe.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = F.cross_entropy(probe(features), labels) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return probe


def cross_validated_accuracy(features, labels, classes, weight_decay, folds, seed) -> float:
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    correct = 0
    for fold in range(folds):
        held = order[fold::folds]
        kept = order[torch.isin(order, held, invert=True)]
        mean, std = features[kept].mean(0), features[kept].std(0) + 1e-6
        probe = fit_probe((features[kept] - mean) / std, labels[kept], classes, weight_decay)
        with torch.no_grad():
            correct += (probe((features[held] - mean) / std).argmax(1) == labels[held]).sum().item()
    return correct / len(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?")
    parser.add_argument("--store")
    parser.add_argument("--column", default="playlist_name")
    parser.add_argument("--per-genre", type=int, default=20)
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a tiny labelled store and run made here: seconds")
    args = parser.parse_args()
    if not args.smoke:
        return probe_report(args)
    with tempfile.TemporaryDirectory() as scratch:
        folder = toolkit.write_cover_folder(Path(scratch) / "covers", 24, 16)
        names = sorted(p.name for p in folder.iterdir())
        (folder / "metadata.csv").write_text("file,playlist_name\n" + "".join(
            f"{name},{'rock' if i % 2 else 'jazz'}\n" for i, name in enumerate(names)))
        ganzoo("data", "prepare", folder, "--size", "16", "--out", Path(scratch) / "store", "--quiet")
        args.store = Path(scratch) / "store"
        args.run = tiny_run(Path(scratch) / "run", "acgan+wgan", "--set", "model.conditions=[genre]", "--set",
                            "options.genre.column=playlist_name", data=args.store)
        args.folds, args.per_genre = 2, 2
        probe_report(args)


def probe_report(args):
    extractor = toolkit.extractor(device=DEVICE)
    data = toolkit.load_store(args.store)
    genres = np.asarray(data.metadata[args.column], dtype=object)
    vocabulary = sorted({g for g in genres if g})
    labelled = np.flatnonzero(genres != "")
    labels = torch.tensor([vocabulary.index(g) for g in genres[labelled]])
    real = toolkit.features(extractor, toolkit.batches_of(data.images, labelled), DEVICE, len(labelled)).double()
    cv_accuracy = cross_validated_accuracy(real, labels, len(vocabulary), args.weight_decay, args.folds, args.seed)
    mean, std = real.mean(0), real.std(0) + 1e-6
    probe = fit_probe((real - mean) / std, labels, len(vocabulary), args.weight_decay)

    sampler = toolkit.load_sampler(args.run, DEVICE)
    requested = np.repeat(np.arange(len(vocabulary)), args.per_genre)
    rows = {column: np.concatenate([sampler.rows_for({args.column: genre}, args.per_genre, args.seed + i)[column]
                                    for i, genre in enumerate(vocabulary)]) for column in sampler.table}
    count = len(requested)
    generated = torch.cat(list(sampler.generate(count, args.seed, rows)))
    fake = toolkit.features(extractor, (generated[i:i + 64] for i in range(0, count, 64)), DEVICE, count)
    with torch.no_grad():
        predicted = probe((fake.double() - mean) / std).argmax(1).numpy()
    shuffled = np.random.default_rng(args.seed).permutation(requested)
    report = {
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}",
        "run": str(args.run), "run_step": sampler.step, "store": str(args.store), "genres": len(vocabulary),
        "real_covers": len(labelled), "generated_covers": count,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "probe_cv_accuracy_on_real": round(cv_accuracy, 4),
        "generated_assigned_to_requested_genre": round(float((predicted == requested).mean()), 4),
        "generated_assigned_to_a_shuffled_genre": round(float((predicted == shuffled).mean()), 4),
        "chance": round(1 / len(vocabulary), 4),
        "majority_share_of_real": round(float(np.bincount(labels.numpy()).max() / len(labels)), 4),
        "per_genre_hits": {g: int((predicted[requested == i] == i).sum()) for i, g in enumerate(vocabulary)},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

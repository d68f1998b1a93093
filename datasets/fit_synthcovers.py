"""Fit the audio-feature model that synthcovers samples from (a Gaussian copula).

Reads real Spotify audio features (a CSV with the nine features below) and real popularity values (a CSV with a
``popularity`` column; rows with a blank value are skipped), and writes each feature's marginal quantiles plus
the correlation matrix of the normal scores. Only these fitted parameters are shipped; the data stays where it is.

    python datasets/fit_synthcovers.py ../shared/data/spotify_audio_features.csv \
        ../shared/data/covers640/labels.csv plugins/ganzoo_synthcovers/feature_model.json
"""

import csv
import json
import sys

import torch

COPULA_FEATURES = ["danceability", "energy", "valence", "tempo", "loudness", "acousticness",
                   "instrumentalness", "speechiness", "liveness"]
QUANTILE_LEVELS = 129


def read_columns(path, names):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    complete = [r for r in rows if all(r.get(n, "").strip() for n in names)]
    return torch.tensor([[float(r[n]) for n in names] for r in complete], dtype=torch.float64)


def normal_scores(column):
    ranks = column.argsort().argsort().to(torch.float64)
    return torch.special.ndtri((ranks + 0.5) / len(column))


def main(features_csv, popularity_csv, out_path):
    values = read_columns(features_csv, COPULA_FEATURES)
    popularity = read_columns(popularity_csv, ["popularity"])[:, 0]
    levels = torch.linspace(0, 1, QUANTILE_LEVELS, dtype=torch.float64)
    scores = torch.stack([normal_scores(values[:, i]) for i in range(values.shape[1])], dim=1)
    correlation = torch.corrcoef(scores.T)
    marginals = {name: torch.quantile(values[:, i], levels).tolist() for i, name in enumerate(COPULA_FEATURES)}
    marginals["popularity"] = torch.quantile(popularity, levels).tolist()
    model = {
        "source": {"audio_features_rows": len(values), "popularity_rows": len(popularity)},
        "copula_features": COPULA_FEATURES,
        "correlation": [[round(v, 4) for v in row] for row in correlation.tolist()],
        "marginals": {k: [round(v, 5) for v in q] for k, q in marginals.items()},
    }
    with open(out_path, "w") as f:
        json.dump(model, f, indent=1)
    print(f"fitted {len(values)} feature rows and {len(popularity)} popularity values -> {out_path}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

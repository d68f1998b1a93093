import numpy as np
import pytest
from scipy.stats import spearmanr

from ganzoo_synthcovers import (DRIVEN_FEATURES, FEATURES, feature_model, measure_features, render, sample_features,
                                synthcovers)


def test_deterministic_for_a_seed():
    a = synthcovers(64, 32, seed=3)
    b = synthcovers(64, 32, seed=3)
    c = synthcovers(64, 32, seed=4)
    assert np.array_equal(a.images, b.images) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.images, c.images) and a.fingerprint != c.fingerprint
    assert set(a.metadata) == set(FEATURES)


def test_features_follow_the_fitted_marginals_and_correlations():
    features = sample_features(20000, seed=0)
    model = feature_model()
    for name in FEATURES:
        quantiles = np.asarray(model["marginals"][name])
        assert features[name].min() >= quantiles[0] and features[name].max() <= quantiles[-1]
        span = quantiles[-1] - quantiles[0]
        assert abs(np.median(features[name]) - quantiles[len(quantiles) // 2]) < 0.03 * span, name
    # energy and loudness are strongly related in real Spotify data; the copula keeps that
    fitted = model["correlation"][1][4]
    measured = spearmanr(features["energy"], features["loudness"])[0]
    assert fitted > 0.5 and abs(measured - fitted) < 0.08


@pytest.mark.parametrize("size", [32, 64])
def test_driven_features_can_be_measured_back(size):
    features = sample_features(400, seed=7)
    measured = measure_features(render(features, size, seed=11))
    for name in DRIVEN_FEATURES:
        correlation = spearmanr(features[name], measured[name])[0]
        assert correlation > 0.8, f"{name}: rank correlation {correlation:.3f}"
    assert np.median(np.abs(measured["valence"] - features["valence"])) < 0.05
    assert np.median(np.abs(measured["loudness"] - features["loudness"])) < 1.5


def test_layout_alone_does_not_move_the_measurements():
    features = {k: np.full(200, v) for k, v in sample_features(1, seed=1).items()}
    measured = measure_features(render(features, 64, seed=2))
    images = render(features, 64, seed=2)
    assert images.std(axis=0).mean() > 10  # the covers differ in layout...
    assert measured["valence"].std() < 0.03 and measured["energy"].std() < 0.03  # ...not in measured features

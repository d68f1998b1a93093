"""Studio latency: milliseconds from a slider move (an /api/covers request) to the 3x3 grid's PNGs, over HTTP.

    python benchmarks/bench_studio.py --size 64 --width 64 --requests 30
    python benchmarks/bench_studio.py --smoke      # tiny sizes, seconds: that the script still runs

Trains a one-step `acgan+wgan` checkpoint on synthcovers (the network's size, not its training, sets the cost),
serves it on 127.0.0.1 and times requests that each move valence, as dragging a slider does.
"""

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import torch
from werkzeug.serving import make_server

from ganzoo.apps import toolkit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 3 requests: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.width, args.requests = 16, 8, 3
    with tempfile.TemporaryDirectory() as scratch:
        config = toolkit.config(recipe="acgan+wgan", data={"image_size": args.size},
                                options={"synthcovers": {"count": 512}},
                                model={"width": args.width, "conditions": ["audio-features"]},
                                schedule={"steps": 1}, system={"device": "cpu"})
        toolkit.run_training(config, Path(scratch) / "run", progress=False)
        app = toolkit.studio_app(Path(scratch) / "run" / "checkpoint.pt")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/api/covers?seed=0&n=9&valence="
        urllib.request.urlopen(url + "0.5").read()  # warm-up
        times = []
        for i in range(args.requests):
            start = time.perf_counter()
            urllib.request.urlopen(url + f"{0.05 + 0.9 * i / args.requests:.3f}").read()
            times.append(1000 * (time.perf_counter() - start))
        server.shutdown()
    times.sort()
    print(json.dumps({"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                      "image_size": args.size, "width": args.width, "grid": 9, "requests": args.requests,
                      "median_ms": round(statistics.median(times), 1),
                      "p90_ms": round(times[int(0.9 * (len(times) - 1))], 1), "max_ms": round(times[-1], 1)},
                     indent=1))


if __name__ == "__main__":
    main()

"""The model gateway's added latency: the same scripted upstream called directly and through the gateway.

Three processes, as in production (the CLI, the conductor, the provider): the scripted model server
(tests/model_standin.py), the gateway (model_gateway/ on uvicorn, token checks, usage ledger, SSE relay)
and this client. Each request streams a small Responses answer (3 SSE events, usage in the last). Direct
and gateway requests alternate, so both see the same machine load. Figures: time to first SSE byte and
to the end of the stream, p50 and p99, and the gateway's added p50. Target: at most 5 ms added at p50.

    python -m benchmarks.gateway_bench [-n 300]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.results import record

KEY = "sk-bench-upstream"
JOB = "job/ticket/jira/BENCH-1"


def serve_standin() -> None:
    from tests.model_standin import ModelStandin

    with ModelStandin(key=KEY) as model:
        # Every request gets the default answer: a short final message with usage in its last event.
        print(model.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def serve_gateway(upstream: str, state: str) -> None:
    from fastapi import FastAPI
    from pydantic import SecretStr

    from conductor_worker.config import Settings
    from model_gateway.routes import router_from_settings
    from security.tokens import mint_token
    from stores.attempts import StagedAttempts
    from tests.standin_server import ThreadedServer

    settings = Settings(
        state_dir=Path(state), model_openai_url=f"{upstream}/v1", model_openai_api_key=SecretStr(KEY)
    )
    StagedAttempts(settings.open_blob_store()).stage(JOB, 1, [])
    app = FastAPI()
    app.include_router(router_from_settings(settings)[0])
    server = ThreadedServer(app, "model gateway").start()
    print(server.base_url, mint_token(settings.signing_secret(), JOB, 1, ttl_seconds=3600), flush=True)
    sys.stdin.read()


def _spawn(*args: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.gateway_bench", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    return proc, proc.stdout.readline().split()


def _one(http: httpx.Client, url: str, token: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = 0.0
    with http.stream(
        "POST", url, json={"stream": True, "input": "hi"}, headers={"authorization": f"Bearer {token}"}
    ) as r:
        for chunk in r.iter_raw():
            if not first and chunk:
                first = time.perf_counter()
    assert r.status_code == 200, r.status_code
    return (first - started) * 1000, (time.perf_counter() - started) * 1000


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        standin, [upstream] = _spawn("--serve-standin")
        gateway, [gateway_url, token] = _spawn("--serve-gateway", upstream, state)
        try:
            results: dict[str, list[tuple[float, float]]] = {"direct": [], "gateway": []}
            with httpx.Client(timeout=30) as http:
                for _ in range(20):  # warm-up: connections, imports, first-request paths
                    _one(http, f"{upstream}/v1/responses", KEY)
                    _one(http, f"{gateway_url}/v1/responses", token)
                for _ in range(n):
                    results["direct"].append(_one(http, f"{upstream}/v1/responses", KEY))
                    results["gateway"].append(_one(http, f"{gateway_url}/v1/responses", token))
        finally:
            for proc in (standin, gateway):
                proc.stdin.close()
                proc.wait(timeout=30)
    figures = {}
    for name, samples in results.items():
        ttfb, total = [s[0] for s in samples], [s[1] for s in samples]
        figures[name] = (statistics.median(ttfb), _pct(ttfb, 99), statistics.median(total), _pct(total, 99))
        print(
            f"{name:8} n={n}: first SSE byte p50 {figures[name][0]:6.2f} ms p99 {figures[name][1]:6.2f} ms; "
            f"whole stream p50 {figures[name][2]:6.2f} ms p99 {figures[name][3]:6.2f} ms"
        )
    added = figures["gateway"][2] - figures["direct"][2]
    added_ttfb = figures["gateway"][0] - figures["direct"][0]
    print(
        f"gateway added: p50 {added:.2f} ms per request (first byte +{added_ttfb:.2f} ms), "
        f"p99 +{figures['gateway'][3] - figures['direct'][3]:.2f} ms; target <= 5 ms at p50: "
        + ("met" if added <= 5 else "NOT met")
    )
    # Rows of the RESULTS table: through the gateway against the same upstream called directly.
    rows = [
        ("model gateway request p50", 2, f"+{added:.2f} ms added", "<= +5 ms"),
        ("model gateway request p99", 3, f"+{figures['gateway'][3] - figures['direct'][3]:.2f} ms added", ""),
        ("model gateway first SSE byte p50", 0, f"+{added_ttfb:.2f} ms added", ""),
        (
            "model gateway first SSE byte p99",
            1,
            f"+{figures['gateway'][1] - figures['direct'][1]:.2f} ms",
            "",
        ),
    ]
    for bench, index, added_text, target in rows:
        through, direct = figures["gateway"][index], figures["direct"][index]
        record(
            bench,
            f"{through:.2f} ms ({added_text}; {n} streamed requests)",
            f"{direct:.2f} ms calling the scripted upstream directly",
            through / direct if direct else 0.0,
            target,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="requests each way")
    parser.add_argument("--serve-standin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs=2, metavar=("UPSTREAM", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_standin:
        serve_standin()
    elif args.serve_gateway:
        serve_gateway(*args.serve_gateway)
    else:
        main(args.n)

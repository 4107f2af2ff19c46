"""The per-job agent's peak RSS through a whole job whose extra step prints 500,000 lines (50 MB).

A real `conductor-agent run` (clone, demo coding agent, the flood step, bundle, report) against the
gateway on loopback, started by a wrapper that prints `getrusage(RUSAGE_CHILDREN).ru_maxrss`: the peak
of the largest process it waited for, the agent (its steps are small processes). Baseline, in the same
run: the same wrapper around a Python that only imports the agent's modules, the agent's fixed cost.
The agent's log buffer keeps at most 1 MiB of unsent lines in memory, so the flood adds little.
"""

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.log_bench import LoopThread, start_bench_gateway
from benchmarks.results import record
from conductor_worker.gateway.local_log_store import LocalLogStore
from stores.job_store import JobAttemptDir
from tests.agent_helpers import stage_job
from tests.git_helpers import make_bare_repo_from
from tests.helpers import EXAMPLES

_WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=False); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_kib(command: list[str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1])


def flood_step(lines: int) -> dict:
    code = f"for i in range({lines}): print(f'{{i:09d}} ' + 'x' * 90)"
    return {"name": "flood", "run": f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"}


def main(lines: int = 500_000) -> None:
    loop = LoopThread()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings, server = start_bench_gateway(loop, tmp / "state")
        try:
            remote = make_bare_repo_from(EXAMPLES / "sample-repo", tmp / "remote.git")
            job_id, token = stage_job(settings, remote, [flood_step(lines)])
            baseline = peak_rss_kib([sys.executable, "-c", "import agent_runtime.cli, agent_runtime.job"])
            agent = [sys.executable, "-m", "agent_runtime", "run", "--gateway", settings.gateway_listen]
            began = time.perf_counter()
            peak = peak_rss_kib([*agent, "--token", token, "--workdir", str(tmp / "work")])
            elapsed = time.perf_counter() - began
        finally:
            loop.run(server.stop(grace=None))
            loop.close()
        result = JobAttemptDir(settings.jobs_dir, job_id, 1).result()
        stored = LocalLogStore(settings.logs_path).read(job_id, 1)
    assert result is not None and result.status == "SUCCEEDED", result
    flood = sum(1 for line in stored if line.step == "flood")
    assert flood == lines, f"{flood} of {lines} flood lines stored"
    print(f"python importing the agent's modules, peak RSS: {baseline / 1024:7.1f} MiB")
    print(
        f"agent job with a {lines}-line step ({lines * 100 / 1e6:.0f} MB of log, {elapsed:.1f} s), peak RSS:"
        f" {peak / 1024:7.1f} MiB = {peak / baseline:.2f} x the import-only baseline"
    )
    record(
        "agent peak RSS",
        f"{peak / 1024:.1f} MiB ({lines}-line step)",
        f"{baseline / 1024:.1f} MiB importing the agent's modules",
        peak / baseline,
        "<= 60 MiB",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=500_000)
    args = parser.parse_args()
    main(args.lines)

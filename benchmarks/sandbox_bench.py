"""What the local launcher's sandbox adds to an agent's start, against the same start without it.

Each round starts `conductor-agent --help` (Python up, the agent's modules imported: the start an
agent pays before it dials the gateway) once plainly and once through the launcher's own bwrap command
line (activities/sandbox.py), alternating so both see the same machine load; then the same for
`/bin/true`, which isolates bwrap's own cost. Also the seed clone a local remote costs per launch.
Medians over `--rounds`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from activities.launch_local import agent_command
from activities.sandbox import SandboxPlan, bwrap_command, seed_local_remote
from tests.git_helpers import make_bare_repo_from
from tests.helpers import EXAMPLES


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def compare(label: str, command: list[str], workdir: Path, env: dict[str, str], rounds: int) -> float:
    sandboxed = bwrap_command(SandboxPlan(workdir=workdir), command, env["PATH"])
    plain_times, sandbox_times = [], []
    timed(command, workdir, env)  # warm the page cache for both
    timed(sandboxed, workdir, env)
    for _ in range(rounds):
        plain_times.append(timed(command, workdir, env))
        sandbox_times.append(timed(sandboxed, workdir, env))
    plain, boxed = statistics.median(plain_times), statistics.median(sandbox_times)
    print(
        f"{label:<28} plain {plain * 1000:7.1f} ms   sandboxed {boxed * 1000:7.1f} ms   "
        f"added {(boxed - plain) * 1000:6.1f} ms (median of {rounds})"
    )
    return boxed - plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    env = {"PATH": os.environ["PATH"], "LANG": os.environ.get("LANG", "C.UTF-8")}
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        workdir = Path(tmp, "state", "jobs", "job", "attempt-1", "workdir")
        workdir.mkdir(parents=True)
        env["HOME"] = str(workdir)
        print("sandbox start-up (activities/sandbox.py; target: at most 100 ms added per agent)")
        bare = compare("/bin/true", ["/bin/true"], workdir, env, args.rounds)
        added = compare(
            "conductor-agent --help", [*agent_command()[:-1], "--help"], workdir, env, args.rounds
        )
        remote = make_bare_repo_from(EXAMPLES / "sample-repo", Path(tmp, "remotes", "greeter.git"))
        seeds = []
        for i in range(5):
            began = time.perf_counter()
            seed_local_remote(str(remote), "main", Path(tmp, f"seeds-{i}"))
            seeds.append(time.perf_counter() - began)
        began = time.perf_counter()
        seed_local_remote(str(remote), "main", Path(tmp, "seeds-0"))
        reused = time.perf_counter() - began
        print(
            f"{'seed of a local remote':<28} {statistics.median(seeds) * 1000:7.1f} ms new "
            f"(sample repo, median of 5), {reused * 1000:.1f} ms when reused by the next job"
        )
        # The agent's own start is noisy (about a second of imports): bwrap's cost alone bounds it too.
        worst = max(added, bare)
        verdict = "within" if worst <= 0.1 else "OVER"
        print(f"the sandbox adds at most {worst * 1000:.0f} ms per agent start: {verdict} the 100 ms target")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

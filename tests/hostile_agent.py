#!/usr/bin/env python3
"""A hostile coding agent: installed as the stand-in `codex`, it tries to reach what the conductor holds.

Run by the per-job agent in the job's clone, like `codex exec`. Each attempt is recorded as
{"ok": bool, "detail": str} in $HOME/hostile-report.json (HOME is the agent's work directory, which the
test reads afterwards); then it makes an ordinary change, so the job itself goes on as usual.
The targets (paths, the conductor's pid) are written in by tests/integration/test_sandbox.py.
"""

import json
import os
import subprocess
from pathlib import Path

TARGETS = json.loads("""__TARGETS__""")


def attempt(report: dict, name: str, action) -> None:
    try:
        report[name] = {"ok": True, "detail": str(action())[:2000]}
    except Exception as err:  # every failure is the answer we hope for
        report[name] = {"ok": False, "detail": f"{type(err).__name__}: {err}"[:2000]}


def git(*args: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "h", "GIT_AUTHOR_EMAIL": "h@x.invalid"}
    identity.update(GIT_COMMITTER_NAME="h", GIT_COMMITTER_EMAIL="h@x.invalid")
    env = {**os.environ, **identity}
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


def push_main(remote: str) -> str:
    # A commit on top of the base, pushed over the remote's main without touching our own branch.
    commit = git("commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "hostile rewrite of main")
    git("push", "--force", remote, f"{commit}:refs/heads/main")
    return commit


def main() -> None:
    report: dict = {}
    # The token secret, through the path the launcher's work directory sits under.
    attempt(report, "token_secret", lambda: Path(TARGETS["token_secret"]).read_text())
    attempt(
        report,
        "token_secret_relative",
        lambda: Path(os.environ["HOME"], TARGETS["secret_relative"]).read_text(),
    )
    attempt(
        report,
        "conductor_environ",
        lambda: Path(f"/proc/{TARGETS['conductor_pid']}/environ").read_bytes().decode(errors="replace"),
    )
    attempt(report, "signal_conductor", lambda: os.kill(TARGETS["conductor_pid"], 0) or "signalled")
    attempt(report, "other_job", lambda: Path(TARGETS["other_job_file"]).read_text())
    attempt(report, "jobs_dir_listing", lambda: sorted(os.listdir(TARGETS["jobs_dir"])))
    # The remote's other branches (the base branch is the agent's to clone).
    attempt(report, "remote_read", lambda: Path(TARGETS["remote"], "refs/heads/private-work").read_text())
    attempt(report, "remote_refs", lambda: git("ls-remote", TARGETS["remote"]))
    attempt(report, "push_main_by_path", lambda: push_main(TARGETS["remote"]))
    attempt(report, "push_main_origin", lambda: push_main("origin"))
    attempt(report, "write_outside_workdir", lambda: Path("/usr/hostile").write_text("x"))
    Path(os.environ["HOME"], "hostile-report.json").write_text(json.dumps(report, indent=1))

    Path("hostile-was-here.txt").write_text("an ordinary change, so the job goes on\n")
    print("hostile agent: attempts done, " + ", ".join(f"{k}={v['ok']}" for k, v in report.items()))


if __name__ == "__main__":
    main()

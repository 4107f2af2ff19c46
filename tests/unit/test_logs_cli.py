"""`conductor logs JOB [--follow] [--attempt N]` prints what the log store holds."""

import threading
import time

import pytest
from typer.testing import CliRunner

from conductor_worker.commands.cli import app
from conductor_worker.gateway.local_log_store import LocalLogStore
from contracts.logs import LogLine

pytestmark = pytest.mark.timeout(60)

JOB = "job/ticket/jira/ENG-9"


def line(seq: int, text: str, step: str = "test", stream: str = "stdout") -> LogLine:
    return LogLine(seq=seq, step=step, stream=stream, text=text, ts=0.0)


@pytest.fixture
def store(tmp_path, monkeypatch) -> LocalLogStore:
    monkeypatch.setenv("CONDUCTOR_STATE_DIR", str(tmp_path))
    return LocalLogStore(tmp_path / "logs")


def test_prints_the_latest_attempt_unless_told_otherwise(store):
    store.append(JOB, 1, [line(1, "first try")])
    store.append(JOB, 2, [line(1, "cloning", step="", stream="agent"), line(2, "ok 3 tests")])

    latest = CliRunner().invoke(app, ["logs", JOB])
    first = CliRunner().invoke(app, ["logs", JOB, "--attempt", "1"])

    assert latest.exit_code == 0, latest.output
    assert latest.stdout.splitlines() == ["00:00:00 agent | cloning", "00:00:00 test stdout | ok 3 tests"]
    assert f"== {JOB} attempt 2" in latest.stderr
    assert first.stdout.splitlines() == ["00:00:00 test stdout | first try"]


def test_an_unknown_job_is_an_error(store):
    result = CliRunner().invoke(app, ["logs", "job/ticket/jira/NOPE-1"])
    assert result.exit_code == 1
    assert "no log for 'job/ticket/jira/NOPE-1'" in result.stderr


def test_follow_prints_until_the_log_is_complete_across_a_relaunch(store):
    store.append(JOB, 1, [line(1, "attempt 1 starts")])

    def agent() -> None:
        time.sleep(0.3)
        store.append(JOB, 1, [line(2, "then its agent is lost")])
        time.sleep(0.6)
        store.append(JOB, 2, [line(1, "attempt 2 starts")])  # relaunched
        for seq in range(2, 5):
            time.sleep(0.2)
            store.append(JOB, 2, [line(seq, f"working {seq}")])
        store.append(JOB, 2, [line(5, "conductor-agent: exiting with code 0", "", "agent")], final=True)

    writer = threading.Thread(target=agent)
    writer.start()
    started = time.monotonic()
    result = CliRunner().invoke(app, ["logs", JOB, "--follow"])
    writer.join()

    assert result.exit_code == 0, result.output
    assert [text.split(" | ")[1] for text in result.stdout.splitlines()] == [
        "attempt 1 starts",
        "then its agent is lost",
        "attempt 2 starts",
        "working 2",
        "working 3",
        "working 4",
        "conductor-agent: exiting with code 0",
    ]
    assert f"== {JOB} attempt 2" in result.stderr
    assert time.monotonic() - started < 10

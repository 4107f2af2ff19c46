"""The step DAG engine on real shells: ordering, parallelism, failure skips, timeouts, cancel, big output."""

import asyncio
import signal
import time
from pathlib import Path

import pytest

from agent_runtime.dag import DagError, DagRunner
from agent_runtime.step_process import TAIL_CHARS
from contracts.jobs import FailureClass
from contracts.steps import StepResult, StepSpec, StepStatus, TaskResult, TaskSpec
from tests.helpers import is_running

pytestmark = pytest.mark.timeout(60)

OK = StepStatus.SUCCEEDED
# A step's own clock, read inside the shell: a step's recorded interval lies within its real run.
STAMP = "date +%s.%N >"


def step(name: str, run: str, *needs: str, **options) -> StepSpec:
    return StepSpec(name=name, run=run, needs=list(needs), **options)


async def run_task(workdir: Path, *steps: StepSpec, on_line=None, **options) -> TaskResult:
    return await DagRunner(TaskSpec(steps=list(steps), **options), workdir, on_line).run()


def by_name(result: TaskResult) -> dict[str, StepResult]:
    names = [s.name for s in result.steps]
    assert len(names) == len(set(names)), f"a step reported twice: {names}"
    return {s.name: s for s in result.steps}


def stamp(path: Path) -> float:
    return float(path.read_text())


async def gone_soon(pid: int, within: float = 2.0) -> bool:
    # A killed process closes its pipes a moment before it turns into a zombie.
    deadline = time.monotonic() + within
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_diamond_joins_after_both_branches_which_run_in_parallel(tmp_path: Path):
    branch = f"{STAMP} {{0}}.start; sleep 0.5; {STAMP} {{0}}.end"
    result = await run_task(
        tmp_path,
        step("a", f"{STAMP} a.end"),
        step("b", branch.format("b"), "a"),
        step("c", branch.format("c"), "a"),
        step("d", f"{STAMP} d.start", "b", "c"),
    )

    assert result.status is OK and result.failure_class is FailureClass.NONE
    assert [s.status for s in result.steps] == [OK] * 4
    t = {f.name: stamp(f) for f in tmp_path.iterdir()}
    assert t["b.start"] >= t["a.end"] and t["c.start"] >= t["a.end"]
    assert t["d.start"] >= max(t["b.end"], t["c.end"])
    assert t["b.start"] < t["c.end"] and t["c.start"] < t["b.end"], "b and c did not overlap"


async def test_fan_out_of_50_never_runs_more_than_max_parallel(tmp_path: Path):
    mark = 'echo "$(date +%s.%N) {}" >> events'
    leaves = [step(f"leaf{i}", f"{mark.format(1)}; sleep 0.2; {mark.format(-1)}", "root") for i in range(50)]

    result = await run_task(tmp_path, step("root", "true"), *leaves, max_parallel=8)

    assert result.status is OK
    assert len(result.steps) == 51 and all(s.status is OK for s in result.steps)
    events = sorted(
        (float(at), int(delta)) for at, delta in (line.split() for line in (tmp_path / "events").open())
    )
    assert len(events) == 100
    running = peak = 0
    for _, delta in events:  # at equal times an end (-1) sorts before a start
        running += delta
        peak = max(peak, running)
    assert 2 <= peak <= 8, f"peak concurrency {peak}"


async def test_a_failed_branch_skips_its_descendants_and_spares_the_rest(tmp_path: Path):
    result = await run_task(
        tmp_path,
        step("root", "true"),
        step("bad", "echo broken >&2; exit 3", "root"),
        step("bad_child", "touch bad_child.ran", "bad"),
        step("bad_grandchild", "touch bad_grandchild.ran", "bad_child"),
        step("good", "sleep 0.3", "root"),
        step("good_child", "touch good_child.ran", "good"),
    )

    steps = by_name(result)
    assert len(steps) == 6
    assert result.status is StepStatus.FAILED and result.failure_class is FailureClass.SCRIPT
    bad = steps["bad"]
    assert (bad.status, bad.exit_code, bad.failure_class) == (StepStatus.FAILED, 3, FailureClass.SCRIPT)
    assert bad.stderr_tail == "broken\n"
    for name in ("bad_child", "bad_grandchild"):
        assert (steps[name].status, steps[name].skipped_because) == (StepStatus.SKIPPED, "bad")
        assert steps[name].exit_code is None and not (tmp_path / f"{name}.ran").exists()
    assert steps["good"].status is OK and steps["good_child"].status is OK
    assert (tmp_path / "good_child.ran").exists()


async def test_a_cycle_is_rejected_before_any_step_runs(tmp_path: Path):
    with pytest.raises(DagError, match=r"dependency cycle: a -> c -> b -> a"):
        await run_task(
            tmp_path,
            step("first", "touch first.ran"),
            step("a", "true", "first", "c"),
            step("b", "true", "a"),
            step("c", "true", "b"),
        )
    assert not (tmp_path / "first.ran").exists()


async def test_an_unknown_dependency_is_rejected_by_name(tmp_path: Path):
    with pytest.raises(DagError, match=r"step 'test' needs unknown step 'biuld'"):
        await run_task(tmp_path, step("build", "touch build.ran"), step("test", "true", "biuld"))
    assert not (tmp_path / "build.ran").exists()


async def test_duplicate_names_are_rejected(tmp_path: Path):
    with pytest.raises(DagError, match=r"duplicate step names: 'x'"):
        await run_task(tmp_path, step("x", "touch x.ran"), step("x", "true"))
    assert not (tmp_path / "x.ran").exists()


async def test_a_step_past_its_timeout_is_stopped(tmp_path: Path):
    started = time.monotonic()
    result = await run_task(
        tmp_path, step("slow", "sleep 60", timeout_seconds=1), step("after", "true", "slow")
    )

    assert time.monotonic() - started < 10
    slow, after = result.steps
    assert (slow.status, slow.failure_class) == (StepStatus.TIMED_OUT, FailureClass.SCRIPT)
    assert slow.exit_code == -signal.SIGTERM
    assert (after.status, after.skipped_because) == (StepStatus.SKIPPED, "slow")
    assert result.status is StepStatus.FAILED


async def test_a_step_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path):
    started = time.monotonic()
    result = await run_task(
        tmp_path, step("stubborn", "trap '' TERM; sleep 60", timeout_seconds=1), kill_grace_seconds=1.5
    )

    elapsed = time.monotonic() - started
    assert 2.4 <= elapsed < 10, elapsed
    (stubborn,) = result.steps
    assert (stubborn.status, stubborn.exit_code) == (StepStatus.TIMED_OUT, -signal.SIGKILL)


async def test_cancel_leaves_no_process_behind_and_starts_nothing_more(tmp_path: Path):
    spawner = "echo $$ > shell.pid; sleep 300 & echo $! > child.pid; wait"
    runner = DagRunner(
        TaskSpec(
            steps=[
                step("spawner", spawner),
                step("queued", "touch queued.ran"),  # waits for the only slot
                step("after", "touch after.ran", "spawner"),
            ],
            max_parallel=1,
            kill_grace_seconds=2,
        ),
        tmp_path,
    )
    running = asyncio.create_task(runner.run())
    while not (tmp_path / "child.pid").exists() or not (tmp_path / "child.pid").read_text():
        await asyncio.sleep(0.02)
    started = time.monotonic()

    runner.cancel()
    result = await running

    assert time.monotonic() - started < 5
    assert result.status is StepStatus.CANCELLED and result.failure_class is FailureClass.NONE
    assert [s.status for s in result.steps] == [StepStatus.CANCELLED] * 3
    assert not (tmp_path / "queued.ran").exists() and not (tmp_path / "after.ran").exists()
    for name in ("shell.pid", "child.pid"):
        pid = int((tmp_path / name).read_text())
        assert await gone_soon(pid), f"{name} ({pid}) survived the cancel"


async def test_ten_megabytes_on_each_stream_at_once_keeps_bounded_tails(tmp_path: Path):
    gen = "head -c 10485760 /dev/zero | tr '\\0' x | fold -w 100"
    counts = {"stdout": 0, "stderr": 0}

    def count(_step: str, stream: str, _line: str) -> None:
        counts[stream] += 1

    result = await run_task(tmp_path, step("loud", f"{gen} & {gen} >&2; wait"), on_line=count)

    (loud,) = result.steps
    assert loud.status is OK
    # 104,857 full lines of 100 and a last, unterminated line of 60.
    assert counts == {"stdout": 104_858, "stderr": 104_858}
    for tail in (loud.stdout_tail, loud.stderr_tail):
        assert len(tail) == TAIL_CHARS
        assert tail.endswith("\n" + "x" * 60)


async def test_on_line_sees_every_line_in_order(tmp_path: Path):
    seen: list[tuple[str, str, str]] = []
    result = await run_task(
        tmp_path,
        step("count", "seq 1 100000; printf 'no newline' >&2"),
        on_line=lambda *line: seen.append(line),
    )

    assert result.status is OK
    assert [line for s, stream, line in seen if stream == "stdout"] == [str(i) for i in range(1, 100_001)]
    assert [line for s, stream, line in seen if stream == "stderr"] == ["no newline"]
    assert {s for s, _, _ in seen} == {"count"}


async def test_a_very_long_line_arrives_in_bounded_pieces(tmp_path: Path):
    pieces: list[str] = []
    result = await run_task(
        tmp_path,
        step("wide", "head -c 200000 /dev/zero | tr '\\0' y; echo; echo next"),
        on_line=lambda _s, _stream, line: pieces.append(line),
    )

    assert result.status is OK
    assert "".join(pieces[:-1]) == "y" * 200_000 and pieces[-1] == "next"
    assert max(len(p) for p in pieces) <= 64 * 1024


async def test_step_env_is_added_to_the_agent_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FROM_AGENT", "agent")
    result = await run_task(tmp_path, step("env", 'echo "$FROM_AGENT $FROM_STEP"', env={"FROM_STEP": "step"}))
    assert result.steps[0].stdout_tail == "agent step\n"


async def test_a_step_that_cannot_start_is_an_infrastructure_failure(tmp_path: Path):
    result = await run_task(tmp_path / "missing", step("nowhere", "true"), step("later", "true", "nowhere"))

    nowhere, later = result.steps
    assert (nowhere.status, nowhere.exit_code) == (StepStatus.FAILED, None)
    assert nowhere.failure_class is FailureClass.INFRASTRUCTURE and "could not start" in nowhere.stderr_tail
    assert later.status is StepStatus.SKIPPED
    assert result.failure_class is FailureClass.INFRASTRUCTURE

"""The agent's step DAG against raw subprocess spawning of the same commands, same parallelism.

200 trivial steps (`echo`) in 8 independent chains of 25, so 8 run at any time (width 8). The agent
figure is the DAG engine as a job runs it (agent_runtime/dag.py, every output line into the agent's
LogBuffer, every state change to a callback); the raw figure spawns the same commands with asyncio,
8 chains side by side, reading their output the same way. Each side runs `repeat` times, alternating,
and the median counts: the machine is shared. Target: at most 1.2 x raw.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from agent_runtime.dag import DagRunner
from agent_runtime.log_buffer import LogBuffer
from benchmarks.results import record
from contracts.steps import StepSpec, StepStatus, TaskSpec


def chains(steps: int, width: int) -> list[list[str]]:
    per_chain = steps // width
    return [[f"echo step {c}-{i}" for i in range(per_chain)] for c in range(width)]


def task_spec(commands: list[list[str]], width: int) -> TaskSpec:
    specs = [
        StepSpec(name=f"s{c}-{i}", run=command, needs=[f"s{c}-{i - 1}"] if i else [])
        for c, chain in enumerate(commands)
        for i, command in enumerate(chain)
    ]
    return TaskSpec(steps=specs, max_parallel=width)


async def agent_dag(spec: TaskSpec, workdir: Path) -> float:
    logs = LogBuffer(workdir / "spill.blocks")
    states: dict[str, StepStatus] = {}
    began = time.perf_counter()
    result = await DagRunner(spec, workdir, on_line=logs.append, on_state=states.__setitem__).run()
    elapsed = time.perf_counter() - began
    assert result.status is StepStatus.SUCCEEDED and logs.last_seq == len(spec.steps)
    return elapsed


async def raw_spawn(commands: list[list[str]], workdir: Path) -> float:
    async def chain(steps: list[str]) -> None:
        for command in steps:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                command,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await proc.communicate()
            assert proc.returncode == 0

    began = time.perf_counter()
    await asyncio.gather(*(chain(steps) for steps in commands))
    return time.perf_counter() - began


async def bench(steps: int, width: int, repeat: int) -> None:
    commands = chains(steps, width)
    spec = task_spec(commands, width)
    agent, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            raw.append(await raw_spawn(commands, Path(tmp)))
            agent.append(await agent_dag(spec, Path(tmp)))
    a, r = statistics.median(agent), statistics.median(raw)
    print(
        f"step DAG, {len(spec.steps)} steps, width {width}:  agent DAG {a:5.2f} s, raw subprocesses"
        f" {r:5.2f} s  = {a / r:.2f} x raw (target <= 1.2; median of {repeat})"
    )
    record(
        "step DAG",
        f"{a:.2f} s ({len(spec.steps)} steps, width {width})",
        f"{r:.2f} s raw subprocesses",
        a / r,
        "<= 1.2 x",
    )


def main(steps: int = 200, width: int = 8, repeat: int = 7) -> None:
    asyncio.run(bench(steps, width, repeat))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    main(args.steps, args.width, args.repeat)

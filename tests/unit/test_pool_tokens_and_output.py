"""Pool agent tokens, the agent's output capture and the exit codes of `conductor run-script`."""

import pytest

from agent_runtime.pool import _Output
from conductor_worker.pool_api.run_script import exit_code_for
from contracts.jobs import FailureClass
from contracts.pool import OUTPUT_LIMIT, ScriptResult, ScriptStatus
from security.tokens import TokenError, mint_agent_token, mint_token, verify_agent_token, verify_token

SECRET = b"s" * 32


def test_agent_token_binds_agent_and_capabilities():
    claims = verify_agent_token(SECRET, mint_agent_token(SECRET, "node-1", ["shell", "python"], 60))
    assert (claims.agent_id, claims.capabilities) == ("node-1", ("python", "shell"))


def test_a_token_of_one_kind_never_passes_as_the_other():
    with pytest.raises(TokenError, match="not a pool agent token"):
        verify_agent_token(SECRET, mint_token(SECRET, "job/x", 1, ttl_seconds=60))
    with pytest.raises(TokenError, match="not a job token"):
        verify_token(SECRET, mint_agent_token(SECRET, "node-1", ["shell"], 60))


def test_expired_agent_token_is_refused():
    with pytest.raises(TokenError, match="expired"):
        verify_agent_token(SECRET, mint_agent_token(SECRET, "node-1", ["shell"], 60), now=10**12)


@pytest.mark.parametrize(
    ("lines", "tail", "expected"),
    [
        (["hi"], "hi\n", "hi\n"),
        (["hi"], "hi", "hi"),  # printf without a final newline
        (["a", ""], "a\n\n", "a\n\n"),
        ([], "", ""),
    ],
)
def test_output_is_rebuilt_exactly_from_lines(lines, tail, expected):
    output = _Output()
    for line in lines:
        output.add(line)
    assert output.text(tail) == expected


def test_output_keeps_the_newest_characters_within_the_limit():
    output = _Output()
    for n in range(OUTPUT_LIMIT // 10):
        output.add(f"line {n:05d}")  # 11 characters with its newline: more than the limit in all
    text = output.text("\n")
    assert len(text) <= OUTPUT_LIMIT
    assert text.startswith("[") and "earlier characters dropped]\n" in text
    assert text.endswith(f"line {OUTPUT_LIMIT // 10 - 1:05d}\n")


@pytest.mark.parametrize(
    ("status", "exit_code", "failure_class", "expected"),
    [
        (ScriptStatus.COMPLETED, 0, FailureClass.NONE, 0),
        (ScriptStatus.FAILED, 3, FailureClass.SCRIPT, 3),
        (ScriptStatus.FAILED, -9, FailureClass.SCRIPT, 137),
        (ScriptStatus.TIMED_OUT, -15, FailureClass.SCRIPT, 124),
        (ScriptStatus.FAILED, None, FailureClass.INFRASTRUCTURE, 69),
    ],
)
def test_run_script_exit_code_mirrors_the_result(status, exit_code, failure_class, expected):
    result = ScriptResult(task_id="t", status=status, exit_code=exit_code, failure_class=failure_class)
    assert exit_code_for(result) == expected

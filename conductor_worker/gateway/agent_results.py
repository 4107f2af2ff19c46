"""An agent's result as it arrives (protobuf) turned into the contract the rest of the conductor sees."""

from contracts.jobs import AgentResult, AgentStatus, FailureClass
from contracts.usage import ModelUsage
from proto.conductor.v1 import agent_pb2

# A git ref name or object id; anything longer is not one.
_MAX_NAME_CHARS = 255


def result_from_proto(
    msg: agent_pb2.AgentResult,
    bundle_key: str,
    max_chars: int,
    model_usage: ModelUsage | None = None,
) -> AgentResult:
    """Protobuf stays at this edge: the rest of the conductor sees the contract.

    The texts go into workflow history and pull requests: each is cut to `max_chars`, saying so.
    """
    try:
        status = AgentStatus(msg.status)
    except ValueError:
        status = AgentStatus.FAILED
    try:
        failure_class = FailureClass(msg.failure_class or "none")
    except ValueError:
        failure_class = FailureClass.INFRASTRUCTURE
    return AgentResult(
        status=status,
        exit_code=msg.exit_code,
        stdout_tail=_cut(msg.stdout_tail, max_chars, keep_end=True),
        stderr_tail=_cut(msg.stderr_tail, max_chars, keep_end=True),
        summary=_cut(msg.summary, max_chars),
        failure_class=failure_class,
        branch=msg.branch[:_MAX_NAME_CHARS],
        commit_sha=msg.commit_sha[:_MAX_NAME_CHARS],
        duration_seconds=msg.duration_seconds,
        bundle_key=bundle_key,
        bundle_sha256=msg.bundle_sha256 if bundle_key else "",
        model_usage=model_usage,
        no_changes=msg.no_changes,
    )


def _cut(text: str, max_chars: int, keep_end: bool = False) -> str:
    if len(text) <= max_chars:
        return text
    note = f"[cut to {max_chars} characters: CONDUCTOR_MAX_RESULT_TEXT_CHARS]"
    return f"{note}\n{text[-max_chars:]}" if keep_end else f"{text[:max_chars]}\n{note}"

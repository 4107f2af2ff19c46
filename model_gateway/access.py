"""Who may call the model gateway: a job's agent, with the token of a live attempt."""

from conductor_worker.job_access import JobAccess, open_job_attempt
from security.tokens import TokenError
from stores.job_store import JobAttemptDir

__all__ = ["JobAccess", "attempt_for_model_call", "token_from_headers"]


def token_from_headers(headers: dict[str, str]) -> str:
    """`Authorization: Bearer <token>` (Codex, ANTHROPIC_AUTH_TOKEN) or `x-api-key` (ANTHROPIC_API_KEY)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return headers.get("x-api-key", "").strip()


def attempt_for_model_call(jobs_dir, secret: bytes, token: str) -> JobAccess:
    """The attempt, or TokenError; an attempt whose result is in has ended and spends nothing more."""
    if not token:
        raise TokenError("missing bearer token")
    access = open_job_attempt(jobs_dir, secret, token)
    if _ended(access.job):
        raise TokenError("token is for an attempt that has ended")
    return access


def _ended(job: JobAttemptDir) -> bool:
    return job.result_path.exists()

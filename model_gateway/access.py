"""Who may call the model gateway: a job's agent, with the token of a live attempt."""

import asyncio

from security.job_access import JobAccess, open_job_attempt
from security.tokens import TokenError
from stores.attempts import StagedAttempts
from stores.job_store import JobAttemptDir

__all__ = ["JobAccess", "attempt_for_model_call", "token_from_headers"]


def token_from_headers(headers: dict[str, str]) -> str:
    """`Authorization: Bearer <token>` (Codex, ANTHROPIC_AUTH_TOKEN) or `x-api-key` (ANTHROPIC_API_KEY)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return headers.get("x-api-key", "").strip()


async def attempt_for_model_call(attempts: StagedAttempts, jobs_dir, secret: bytes, token: str) -> JobAccess:
    """The attempt, or TokenError; an attempt whose result is in has ended and spends nothing more."""
    if not token:
        raise TokenError("missing bearer token")
    # In a thread: with the s3 blob store, an attempt not seen for a while costs a request (each check).
    access = await asyncio.to_thread(open_job_attempt, attempts, jobs_dir, secret, token)
    if await asyncio.to_thread(_ended, attempts, access.job):
        raise TokenError("token is for an attempt that has ended")
    return access


def _ended(attempts: StagedAttempts, job: JobAttemptDir) -> bool:
    """Its result is in: on this replica (its own record), or on any (the marker in the shared blob store)."""
    return job.result_path.exists() or attempts.ended(job.job_id, job.attempt)

"""The one check of an agent's per-job token, shared by the gRPC gateway and the model gateway.

A token opens its job attempt when its signature and expiry hold, the attempt was staged by a conductor
sharing this state directory, and no later attempt has replaced it (a relaunched job's old agent must
neither report nor spend). The model gateway adds one more: the attempt has not ended.
"""

from dataclasses import dataclass
from pathlib import Path

from security.tokens import TokenClaims, TokenError, verify_token
from stores.job_store import JobAttemptDir


@dataclass(frozen=True)
class JobAccess:
    claims: TokenClaims
    job: JobAttemptDir


def open_job_attempt(jobs_dir: Path, secret: bytes, token: str) -> JobAccess:
    """The attempt the token opens; TokenError says why not."""
    claims = verify_token(secret, token)
    job = JobAttemptDir(jobs_dir, claims.job_id, claims.attempt)
    if not job.root.is_dir():
        raise TokenError("token names an unknown job attempt")
    if job.superseded():
        raise TokenError("token is for a superseded attempt")
    return JobAccess(claims, job)

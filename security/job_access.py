"""The one check of an agent's per-job token, shared by the gRPC gateway and the model gateway.

A token opens its job attempt when its signature and expiry hold, the attempt is staged in the blob store
the conductors share (stores/attempts.py), and no later attempt has replaced it (a relaunched job's old
agent must neither report nor spend). Nothing of it is on the conductor's own disk: any replica serves
any agent. The model gateway adds one more: the attempt has not ended.
"""

from dataclasses import dataclass
from pathlib import Path

from security.tokens import TokenClaims, TokenError, verify_token
from stores.attempts import StagedAttempt, StagedAttempts
from stores.job_store import JobAttemptDir


@dataclass(frozen=True)
class JobAccess:
    claims: TokenClaims
    staged: StagedAttempt
    # This conductor's private record of what the agent said to it (stores/job_store.py).
    job: JobAttemptDir


def open_job_attempt(attempts: StagedAttempts, jobs_dir: Path, secret: bytes, token: str) -> JobAccess:
    """The attempt the token opens; TokenError says why not."""
    claims = verify_token(secret, token)
    staged = attempts.get(claims.job_id, claims.attempt)
    if staged is None:
        raise TokenError("token names an unknown job attempt")
    if attempts.superseded(claims.job_id, claims.attempt):
        raise TokenError("token is for a superseded attempt")
    return JobAccess(claims, staged, JobAttemptDir(jobs_dir, claims.job_id, claims.attempt))

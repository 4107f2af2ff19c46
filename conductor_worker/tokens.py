"""Per-job agent tokens: HMAC-SHA256 over (job id, attempt, expiry).

A token is all an agent holds. It proves which job attempt the caller works for and nothing else:
no GitHub, Temporal or cloud credential ever reaches the agent.
"""

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass


class TokenError(Exception):
    """The token is malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class TokenClaims:
    job_id: str
    attempt: int
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def mint_token(secret: bytes, job_id: str, attempt: int, ttl_seconds: float) -> str:
    claims = {"job": job_id, "attempt": attempt, "exp": int(time.time() + ttl_seconds)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_sign(secret, payload)}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> TokenClaims:
    payload, sep, signature = token.partition(".")
    if not sep or not payload or not signature:
        raise TokenError("malformed token")
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise TokenError("bad token signature")
    try:
        raw = json.loads(_unb64(payload))
        claims = TokenClaims(str(raw["job"]), int(raw["attempt"]), float(raw["exp"]))
    except (ValueError, KeyError, TypeError) as err:
        raise TokenError("malformed token claims") from err
    if (now if now is not None else time.time()) >= claims.expires_at:
        raise TokenError("token expired")
    return claims

"""Agent tokens: HMAC-SHA256 over signed claims, in two kinds sharing one format and secret.

A per-job token (gRPC gateway) binds a job attempt: job id, attempt, expiry. A pool agent token (REST
API) binds an agent id and the capabilities it registered with. A token is all an agent holds. It
proves who the caller is and nothing else: no GitHub, Temporal or cloud credential ever reaches it.
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


@dataclass(frozen=True)
class AgentTokenClaims:
    agent_id: str
    capabilities: tuple[str, ...]
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def _mint(secret: bytes, claims: dict, ttl_seconds: float) -> str:
    claims = {**claims, "exp": int(time.time() + ttl_seconds)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_sign(secret, payload)}"


def _verified_claims(secret: bytes, token: str) -> dict:
    payload, sep, signature = token.partition(".")
    if not sep or not payload or not signature:
        raise TokenError("malformed token")
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise TokenError("bad token signature")
    try:
        raw = json.loads(_unb64(payload))
    except ValueError as err:
        raise TokenError("malformed token claims") from err
    if not isinstance(raw, dict):
        raise TokenError("malformed token claims")
    return raw


def _check_expiry(expires_at: float, now: float | None) -> None:
    if (now if now is not None else time.time()) >= expires_at:
        raise TokenError("token expired")


def mint_token(secret: bytes, job_id: str, attempt: int, ttl_seconds: float) -> str:
    return _mint(secret, {"job": job_id, "attempt": attempt}, ttl_seconds)


def verify_token(secret: bytes, token: str, now: float | None = None) -> TokenClaims:
    raw = _verified_claims(secret, token)
    # Job tokens predate the `kind` claim; a pool agent's token must not open a job.
    if raw.get("kind", "job") != "job":
        raise TokenError("not a job token")
    try:
        claims = TokenClaims(str(raw["job"]), int(raw["attempt"]), float(raw["exp"]))
    except (ValueError, KeyError, TypeError) as err:
        raise TokenError("malformed token claims") from err
    _check_expiry(claims.expires_at, now)
    return claims


def mint_agent_token(secret: bytes, agent_id: str, capabilities: list[str], ttl_seconds: float) -> str:
    return _mint(secret, {"kind": "agent", "agent": agent_id, "caps": sorted(capabilities)}, ttl_seconds)


def verify_agent_token(secret: bytes, token: str, now: float | None = None) -> AgentTokenClaims:
    raw = _verified_claims(secret, token)
    if raw.get("kind") != "agent":
        raise TokenError("not a pool agent token")
    try:
        claims = AgentTokenClaims(str(raw["agent"]), tuple(str(c) for c in raw["caps"]), float(raw["exp"]))
    except (ValueError, KeyError, TypeError) as err:
        raise TokenError("malformed token claims") from err
    _check_expiry(claims.expires_at, now)
    return claims

"""The gateway's log calls: a token's check is reused for a moment, never past it nor past the token's
expiry, and a refused check is never reused."""

import time

import pytest

from conductor_worker.gateway import log_calls
from conductor_worker.gateway.log_blocks import LogBlock
from conductor_worker.gateway.log_calls import LogCalls
from security.tokens import TokenClaims, TokenError


class _Store:
    def append_group(self, job_id, attempt, group):
        return [block.last_seq for block, _ in group]


class _Context:
    def __init__(self, token: str) -> None:
        self._token = token

    def invocation_metadata(self):
        return (("authorization", f"Bearer {self._token}"),)


class _Checks:
    """The gateway's token check, counted; `refuse` makes it fail."""

    def __init__(self, expires_in: float = 600) -> None:
        self.count = 0
        self.refuse = False
        self.expires_in = expires_in

    async def __call__(self, context):
        self.count += 1
        if self.refuse:
            raise TokenError("token is for a superseded attempt")
        return TokenClaims("job/a", 1, time.time() + self.expires_in), None


def _block(seq: int):
    return lambda: LogBlock.checked(seq, ["x"], [1.0], [("s", "stdout", 1)])


async def test_a_token_is_checked_once_while_its_check_holds():
    checks = _Checks()
    calls = LogCalls(_Store(), checks)
    acks = [await calls.store(_Context("t"), _block(seq), False) for seq in (1, 2, 3)]
    assert [ack.acked_through_seq for ack in acks] == [1, 2, 3]
    assert checks.count == 1


async def test_a_token_is_checked_again_once_its_check_ran_out(monkeypatch):
    monkeypatch.setattr(log_calls, "CHECK_REUSE_SECONDS", 0.0)  # every check has run out as it is made
    checks = _Checks()
    calls = LogCalls(_Store(), checks)
    for seq in (1, 2):
        await calls.store(_Context("t"), _block(seq), False)
    assert checks.count == 2


async def test_each_token_is_checked_and_a_refused_one_again_every_call():
    checks = _Checks()
    calls = LogCalls(_Store(), checks)
    await calls.store(_Context("t"), _block(1), False)
    await calls.store(_Context("other"), _block(1), False)
    assert checks.count == 2
    checks.refuse = True
    for _ in range(2):
        with pytest.raises(TokenError):
            await calls.store(_Context("third"), _block(1), False)
    assert checks.count == 4


async def test_a_check_is_not_reused_past_the_tokens_expiry():
    checks = _Checks(expires_in=-1)  # as if it expired since its check
    calls = LogCalls(_Store(), checks)
    await calls.store(_Context("t"), _block(1), False)
    await calls.store(_Context("t"), _block(2), False)
    assert checks.count == 2

import pytest

from security.tokens import TokenError, mint_token, verify_token

SECRET = b"s" * 32


def test_round_trip_binds_job_and_attempt():
    claims = verify_token(SECRET, mint_token(SECRET, "job/ticket/jira/ENG-1", 2, ttl_seconds=60))
    assert (claims.job_id, claims.attempt) == ("job/ticket/jira/ENG-1", 2)


def test_expired_token_is_refused():
    token = mint_token(SECRET, "job/x", 1, ttl_seconds=60)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token, now=10**12)


def test_token_signed_with_another_secret_is_refused():
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, mint_token(b"other" * 8, "job/x", 1, ttl_seconds=60))


def test_edited_claims_are_refused():
    token = mint_token(SECRET, "job/x", 1, ttl_seconds=60)
    forged = mint_token(b"other" * 8, "job/x", 9, ttl_seconds=60).split(".")[0]
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, forged + "." + token.split(".")[1])


@pytest.mark.parametrize("token", ["", "nodot", ".sig", "payload."])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(TokenError):
        verify_token(SECRET, token)


def test_conductors_starting_together_share_one_token_secret(tmp_path):
    """Two conductor processes on a fresh state dir once raced here and one of them crashed."""
    import os
    import stat
    from concurrent.futures import ThreadPoolExecutor

    from conductor_worker.config import Settings

    settings = Settings(state_dir=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: settings.signing_secret(), range(40)))
    assert len(secrets) == 1 and len(next(iter(secrets))) == 64
    assert stat.S_IMODE(os.stat(tmp_path / "token-secret").st_mode) == 0o600
    assert os.listdir(tmp_path) == ["token-secret"]

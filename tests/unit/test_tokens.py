import pytest

from conductor_worker.tokens import TokenError, mint_token, verify_token

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

"""Each replica's own names (host task queue, drain flag, ready file) and the token secret's sources."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from conductor_worker.config import READY_FILE_NAME, SHUTDOWN_FLAG_NAME, Settings, TokenSecretMissing

SECRET = "0123456789abcdef" * 4


def test_replicas_on_different_state_dirs_have_their_own_queue_and_files(tmp_path):
    a, b = Settings(state_dir=tmp_path / "a"), Settings(state_dir=tmp_path / "b")
    assert a.replica != b.replica
    assert a.host_task_queue != b.host_task_queue
    assert a.host_task_queue.startswith(f"{a.task_queue}/host/")
    assert a.shutdown_flag_path == tmp_path / "a" / "replicas" / a.replica / SHUTDOWN_FLAG_NAME
    assert a.ready_path == tmp_path / "a" / "replicas" / a.replica / READY_FILE_NAME
    # A restart on the same host and state dir is the same replica: it takes its agents back.
    assert Settings(state_dir=tmp_path / "a").host_task_queue == a.host_task_queue


def test_replicas_sharing_a_state_dir_are_told_apart_by_their_id(tmp_path):
    a = Settings(state_dir=tmp_path, replica_id="replica-a")
    b = Settings(state_dir=tmp_path, replica_id="replica-b")
    assert (a.replica, b.replica) == ("replica-a", "replica-b")
    assert a.shutdown_flag_path != b.shutdown_flag_path and a.ready_path != b.ready_path
    assert a.host_task_queue.endswith("/host/replica-a")


@pytest.mark.parametrize("bad", ["has space", "../up", "-leading", "x" * 65, "a/b"])
def test_a_replica_id_that_cannot_name_a_queue_or_directory_is_refused(bad):
    with pytest.raises(ValidationError, match="CONDUCTOR_REPLICA_ID"):
        Settings(replica_id=bad)


def test_the_token_secret_from_the_environment_is_used_and_no_file_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_TOKEN_SECRET", SECRET)
    settings = Settings(state_dir=tmp_path)
    assert settings.signing_secret() == SECRET.encode()
    settings.check_token_secret()
    assert list(tmp_path.iterdir()) == []


def test_a_short_token_secret_is_refused(monkeypatch):
    monkeypatch.setenv("CONDUCTOR_TOKEN_SECRET", "changeme")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings()


def test_without_a_secret_serve_refuses_unless_one_host_may_generate_it(tmp_path):
    with pytest.raises(TokenSecretMissing, match="CONDUCTOR_TOKEN_SECRET"):
        Settings(state_dir=tmp_path).check_token_secret()
    Settings(state_dir=tmp_path, generate_token_secret=True).check_token_secret()
    # The embedded default (dev, tests, a script) still makes one under the state dir.
    assert len(Settings(state_dir=tmp_path).signing_secret()) == 64
    assert (tmp_path / "token-secret").exists()


def test_conductor_serve_without_a_secret_stops_with_a_clear_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CONDUCTOR_STATE_DIR": str(tmp_path), "CONDUCTOR_TEMPORAL_ADDRESS": "x:1"}
    done = subprocess.run(
        [sys.executable, "-m", "conductor_worker", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "set CONDUCTOR_TOKEN_SECRET" in done.stderr
    assert not (tmp_path / "token-secret").exists()

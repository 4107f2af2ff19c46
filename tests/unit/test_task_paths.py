import pytest

from contracts.jobs import TaskFile
from contracts.task_paths import TaskFilePathError, check_relative_path
from stores.attempts import StagedAttempts, file_key
from stores.blob_store import LocalBlobStore


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "a/../../b", "./x", "", "a//b", "~/x", "a\\b", "a/.."]
)
def test_bad_paths_are_rejected(path):
    with pytest.raises(TaskFilePathError):
        check_relative_path(path)


@pytest.mark.parametrize("path", ["job.json", "prompt.md", "context/alarms/1.json", "a..b"])
def test_plain_relative_paths_are_accepted(path):
    assert str(check_relative_path(path)) == path


def test_staging_rejects_a_bad_path_and_stages_no_attempt(tmp_path):
    attempts = StagedAttempts(LocalBlobStore(tmp_path))
    with pytest.raises(TaskFilePathError):
        attempts.stage(
            "job/x", 1, [TaskFile(path="ok.txt", content="1"), TaskFile(path="../evil", content="2")]
        )
    assert not list(tmp_path.rglob("evil")) and attempts.get("job/x", 1) is None


def test_gateway_serves_only_staged_files(tmp_path):
    attempts = StagedAttempts(LocalBlobStore(tmp_path))
    attempts.stage("job/x", 1, [TaskFile(path="job.json", content="{}")])
    staged = attempts.get("job/x", 1)
    assert attempts.blobs.get_bytes(file_key("job/x", 1, "job.json"), staged.file("job.json").sha256) == b"{}"
    with pytest.raises(FileNotFoundError):
        staged.file("attempt.json")

import pytest

from contracts.jobs import TaskFile
from contracts.task_paths import TaskFilePathError, check_relative_path
from stores.job_store import JobAttemptDir


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "a/../../b", "./x", "", "a//b", "~/x", "a\\b", "a/.."]
)
def test_bad_paths_are_rejected(path):
    with pytest.raises(TaskFilePathError):
        check_relative_path(path)


@pytest.mark.parametrize("path", ["job.json", "prompt.md", "context/alarms/1.json", "a..b"])
def test_plain_relative_paths_are_accepted(path):
    assert str(check_relative_path(path)) == path


def test_staging_rejects_before_writing_anything(tmp_path):
    job = JobAttemptDir(tmp_path, "job/x", 1)
    with pytest.raises(TaskFilePathError):
        job.stage_files([TaskFile(path="ok.txt", content="1"), TaskFile(path="../evil", content="2")])
    assert not (tmp_path / "evil").exists()


def test_gateway_serves_only_manifest_files(tmp_path):
    job = JobAttemptDir(tmp_path, "job/x", 1)
    job.stage_files([TaskFile(path="job.json", content="{}")])
    assert job.staged_file("job.json").read_text() == "{}"
    with pytest.raises(FileNotFoundError):
        job.staged_file("manifest.json")

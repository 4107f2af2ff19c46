"""The job store's heartbeat record carries the agent's step states beside its phase."""

from stores.job_store import JobAttemptDir


def test_step_states_survive_beats_without_them(tmp_path):
    job = JobAttemptDir(tmp_path, "job/ticket/jira/ENG-1", 1)
    job.root.mkdir(parents=True)
    assert job.step_states() == {} and job.last_heartbeat() is None
    job.record_heartbeat("running", {"clone": "SUCCEEDED", "code": "RUNNING"})
    job.record_heartbeat("streaming-files")  # a beat that says nothing about steps keeps them
    assert job.step_states() == {"clone": "SUCCEEDED", "code": "RUNNING"}
    assert job.last_heartbeat()[1] == "streaming-files"


def test_a_record_from_before_step_states_reads_as_its_phase(tmp_path):
    job = JobAttemptDir(tmp_path, "job/ticket/jira/ENG-1", 1)
    job.root.mkdir(parents=True)
    job.heartbeat_path.write_text("running")
    assert job.last_heartbeat()[1] == "running" and job.step_states() == {}

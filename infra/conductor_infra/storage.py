"""Where the conductor keeps things outside Temporal: one S3 bucket, agent logs and blobs under their prefixes.

Replicas share only Temporal and this bucket (README "Replicas"): the log store writes under `logs/`, the
blob store (staged task files, agents' bundles, whole ticket descriptions) under `blobs/`. Each conductor
task's state dir is its own, on the task's ephemeral storage.

One bucket with two prefixes rather than a bucket each: both hold the conductor's own data under the same
protections (private, TLS only, S3-managed keys), the conductor's role is scoped by prefix either way, an
agent only ever holds a presigned URL for one key, and a retention is a lifecycle rule per prefix. The
bucket keeps the logical id it had as the log bucket, so updating a deployed stack keeps its logs.
"""

from aws_cdk import Duration, RemovalPolicy, aws_s3
from constructs import Construct

# CONDUCTOR_LOGS_S3_PREFIX and CONDUCTOR_BLOB_S3_PREFIX (their defaults in conductor_worker/config.py).
LOGS_PREFIX = "logs/"
BLOBS_PREFIX = "blobs/"
# A job attempt's staged files, its record and the agent's bundle (stores/attempts.py), by key
# jobs/<job>/attempt-<n>/…. They are read while the attempt runs (its agent's token lasts at most
# CONDUCTOR_TOKEN_TTL_SECONDS, 6 h) and by the publish right after it; a `retry` (within the 24 h retry
# window) stages a new attempt under new keys, and job ids are never reused. A week is ample for that and
# keeps a failed publish's bundle long enough to look at.
JOB_BLOBS_PREFIX = BLOBS_PREFIX + "jobs/"
JOB_BLOBS_EXPIRE_AFTER = Duration.days(7)
# Parts of a multipart upload (a bundle through the gateway's fallback) whose conductor died mid-upload.
INCOMPLETE_UPLOADS_ABORTED_AFTER = Duration.days(1)


class Storage(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        # Logs are what people read after a failed job: kept when the stack goes, and never expired here.
        # Ticket descriptions (blobs/<sha256>) are not expired either: they are content-addressed, so a new
        # job with the same text reuses an old object, which an age-based rule would delete under it.
        self.bucket = aws_s3.Bucket(
            self,
            "AgentLogs",
            block_public_access=aws_s3.BlockPublicAccess.BLOCK_ALL,
            encryption=aws_s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                aws_s3.LifecycleRule(
                    id="expire-job-blobs", prefix=JOB_BLOBS_PREFIX, expiration=JOB_BLOBS_EXPIRE_AFTER
                ),
                aws_s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOADS_ABORTED_AFTER,
                ),
            ],
        )

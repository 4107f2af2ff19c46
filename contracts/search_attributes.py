"""Search attributes the Web UI filters jobs by. Registered by `conductor dev`."""

from temporalio.common import SearchAttributeKey

JOB_KIND = SearchAttributeKey.for_keyword("ConductorJobKind")
TICKET_KEY = SearchAttributeKey.for_keyword("TicketKey")
AWS_ACCOUNT = SearchAttributeKey.for_keyword("AwsAccount")
REPOSITORY = SearchAttributeKey.for_keyword("Repository")
JOB_STATE = SearchAttributeKey.for_keyword("JobState")

ALL = [JOB_KIND, TICKET_KEY, AWS_ACCOUNT, REPOSITORY, JOB_STATE]

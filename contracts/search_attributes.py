"""Search attributes the Web UI filters jobs by. Registered by `conductor dev`."""

from temporalio.common import SearchAttributeKey

JOB_KIND = SearchAttributeKey.for_keyword("ConductorJobKind")
TICKET_KEY = SearchAttributeKey.for_keyword("TicketKey")
AWS_ACCOUNT = SearchAttributeKey.for_keyword("AwsAccount")
REPOSITORY = SearchAttributeKey.for_keyword("Repository")
JOB_STATE = SearchAttributeKey.for_keyword("JobState")
# A job's model usage as the gateway counted it (its current attempt): input + output tokens, and US
# dollars by the price table (CONDUCTOR_MODEL_PRICES), e.g. `ModelCostUsd > 5`.
MODEL_TOKENS = SearchAttributeKey.for_int("ModelTokens")
MODEL_COST_USD = SearchAttributeKey.for_float("ModelCostUsd")

ALL = [JOB_KIND, TICKET_KEY, AWS_ACCOUNT, REPOSITORY, JOB_STATE, MODEL_TOKENS, MODEL_COST_USD]


def type_name(key: SearchAttributeKey) -> str:
    """As the `temporal` CLI and the Web UI spell the type: Keyword, Int, Double."""
    return {"KEYWORD": "Keyword", "INT": "Int", "DOUBLE": "Double"}[key.indexed_value_type.name]

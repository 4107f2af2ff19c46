"""The conductor's model gateway: the only way a job's coding agent reaches a model.

    POST /v1/responses   OpenAI Responses API (Codex CLI)
    POST /v1/messages    Anthropic Messages API (Claude Code)

served on the conductor's HTTP server beside the pool REST API. The agent presents its per-job token;
the gateway forwards to the configured provider with the provider key only the conductor holds, streams
the SSE answer back as it arrives, and counts the tokens of each answer per job attempt.

    access.py     the token check (the gRPC gateway's, plus: the attempt has not ended)
    providers.py  the two APIs: paths, headers, where each answer states its usage
    sse.py        reading SSE events out of the bytes passing through
    upstream.py   the provider client: retries 429/5xx before the first byte, honouring Retry-After
    usage.py      per-attempt totals, one object per request in the shared blob store
    budget.py     the token budget: a request past it is held until an operator decides
    steering.py   operator instructions (`steer`) added to every request's conversation
    delivery.py   the `steering_delivered` signal telling the job a request carried them
    routes.py     the FastAPI routes tying these together
"""

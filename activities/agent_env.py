"""What every launcher hands its agent: where the gateways are, the per-job token, how to code, and TLS.

Never a model provider's key: the coding CLI reaches the model through the conductor's model gateway with
the job token (model_gateway/).
"""

from conductor_worker.config import Settings


def agent_job_environment(settings: Settings, token: str) -> dict[str, str]:
    env = {
        "CONDUCTOR_AGENT_GATEWAY": settings.agent_gateway_address,
        "CONDUCTOR_AGENT_TOKEN": token,
        "CONDUCTOR_AGENT_CODING_AGENT": settings.coding_agent,
        "CONDUCTOR_AGENT_CODING_AGENT_TIMEOUT": str(settings.coding_agent_timeout_seconds),
        "CONDUCTOR_AGENT_LOG_SPILL_BYTES": str(settings.agent_log_spill_bytes),
    }
    if settings.model_gateway_public_url:
        env["CONDUCTOR_AGENT_MODEL_GATEWAY"] = settings.model_gateway_public_url
    if settings.coding_agent_model:
        env["CONDUCTOR_AGENT_MODEL"] = settings.coding_agent_model
    # Paths, not secrets of the conductor: the agent's own client certificate, and the CA it trusts.
    for name, path in (
        ("CONDUCTOR_AGENT_TLS_CA", settings.agent_tls_ca_file),
        ("CONDUCTOR_AGENT_TLS_CERT", settings.agent_tls_cert_file),
        ("CONDUCTOR_AGENT_TLS_KEY", settings.agent_tls_key_file),
    ):
        if path:
            env[name] = str(path)
    return env

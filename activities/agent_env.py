"""What every launcher hands its agent: where the gateways are, the per-job token, how to code, and TLS.

Never a model provider's key: the coding CLI reaches the model through the conductor's model gateway with
the job token (model_gateway/).
"""

from activities.launcher_config import AgentEnvironment


def agent_job_environment(agent: AgentEnvironment, token: str) -> dict[str, str]:
    env = {
        "CONDUCTOR_AGENT_GATEWAY": agent.gateway_address,
        "CONDUCTOR_AGENT_TOKEN": token,
        "CONDUCTOR_AGENT_CODING_AGENT": agent.coding_agent,
        "CONDUCTOR_AGENT_CODING_AGENT_TIMEOUT": str(agent.coding_agent_timeout_seconds),
        "CONDUCTOR_AGENT_LOG_SPILL_BYTES": str(agent.log_spill_bytes),
    }
    if agent.model_gateway_url:
        env["CONDUCTOR_AGENT_MODEL_GATEWAY"] = agent.model_gateway_url
    if agent.coding_agent_model:
        env["CONDUCTOR_AGENT_MODEL"] = agent.coding_agent_model
    # Paths, not secrets of the conductor: the agent's own client certificate, and the CA it trusts.
    for name, path in (
        ("CONDUCTOR_AGENT_TLS_CA", agent.tls_ca_file),
        ("CONDUCTOR_AGENT_TLS_CERT", agent.tls_cert_file),
        ("CONDUCTOR_AGENT_TLS_KEY", agent.tls_key_file),
    ):
        if path:
            env[name] = str(path)
    return env

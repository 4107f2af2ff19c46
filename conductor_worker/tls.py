"""TLS and mTLS for the conductor's listeners (gRPC gateway, REST API), from the settings' files."""

import ssl

import grpc

from conductor_worker.config import Settings


class TlsConfigError(ValueError):
    """The TLS settings are incomplete; names what is missing."""


def tls_enabled(settings: Settings) -> bool:
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise TlsConfigError("TLS needs both CONDUCTOR_TLS_CERT_FILE and CONDUCTOR_TLS_KEY_FILE")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise TlsConfigError("mTLS (CONDUCTOR_TLS_CLIENT_CA_FILE) needs TLS: set the certificate and key too")
    return bool(settings.tls_cert_file)


def grpc_server_credentials(settings: Settings) -> grpc.ServerCredentials:
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def uvicorn_ssl_options(settings: Settings) -> dict:
    """Keyword arguments for uvicorn.Config: HTTPS, and client certificates required under mTLS."""
    if not tls_enabled(settings):
        return {}
    options = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}
    if settings.tls_client_ca_file:
        options |= {"ssl_ca_certs": str(settings.tls_client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options

"""The one Temporal client factory: address, namespace and the pydantic data converter."""

import asyncio
import logging
import time
from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from conductor_worker.config import Settings

log = logging.getLogger(__name__)

# A server that listens but whose frontend is still starting answers `Unavailable` ("Frontend is not
# healthy yet") for a few seconds: a conductor started beside it (compose, `conductor dev`, the tests'
# dev servers) waits that long. A refused connection or bad TLS is not this, and fails at once.
STARTING_SERVER_PATIENCE_SECONDS = 30.0


async def connect(
    settings: Settings,
    patience: float = STARTING_SERVER_PATIENCE_SECONDS,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """`runtime`: one that exports metrics (conductor_worker/metrics.py); the SDK's default otherwise.
    `interceptors`: e.g. tracing (conductor_worker/process/tracing.py); workers built on the client take them too."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=pydantic_data_converter,
                runtime=runtime,
                interceptors=interceptors,
            )
        except RuntimeError as err:
            if "Unavailable" not in str(err) or time.monotonic() + delay > deadline:
                raise
            if delay == 0.2:
                log.warning(
                    "Temporal at %s is starting (%s); waiting up to %.0f s",
                    settings.temporal_address,
                    err,
                    patience,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

"""Server-sent events read out of the raw bytes the gateway passes through, without holding them up."""

import json
from typing import Any


class SseReader:
    """Feed chunks as they pass; get back each complete event's JSON data (events that carry none are skipped).

    Only what is needed to read usage: `data:` lines joined per event, parsed as JSON. The bytes themselves
    go to the agent unchanged, whatever this makes of them.
    """

    # An event larger than this is not one we need to read (usage events are small): drop its data.
    MAX_EVENT_BYTES = 4 << 20

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                if len(self._buffer) > self.MAX_EVENT_BYTES:
                    self._buffer = b""
                return events
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")
            )
            if not data:
                continue
            try:
                value = json.loads(data)
            except ValueError:
                continue  # `data: [DONE]` and the like
            if isinstance(value, dict):
                events.append(value)

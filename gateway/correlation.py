"""The ids a client sends to correlate its calls, kept apart from the platform's request id.

Every call is named by the platform's own `req_…` id (`X-Request-Id` on the answer, `request_id`
in problems, the access log and the signed evidence entry), never by one the client chose: two
calls would share an id in the signed log, and a caller could take another call's id. What a
client sends is played back beside it instead:

- `X-Request-Id`, when it is a plain token (1 to 64 visible ASCII characters; anything else is
  ignored), comes back as `X-Client-Request-Id` and is written in the access log line. It is not
  written in the evidence entry, whose signed format stays as it is.
- `x-fapi-interaction-id` (UK Open Banking, FAPI): a UUID the client sent comes back as sent;
  absent or not a UUID, the answer carries a fresh UUID4. It is written in the access log too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import NamedTuple

_TOKEN = re.compile(rb"[\x21-\x7e]{1,64}")
_UUID = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
def uuid4() -> str:
    """A fresh random (version 4) UUID in its text form."""
    return str(uuid.uuid4())


class Correlation(NamedTuple):
    """A call's client-side ids: the client's request id (None when it sent no usable one)
    and the interaction id the answer carries."""

    client_request_id: str | None
    interaction_id: str

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers that play them back."""
        found = [(b"x-fapi-interaction-id", self.interaction_id.encode())]
        if self.client_request_id is not None:
            found.append((b"x-client-request-id", self.client_request_id.encode()))
        return found


def correlation(headers: Iterable[tuple[bytes, bytes]]) -> Correlation:
    """The correlation ids of a request with these (ASGI, lower-case) headers; the first of a
    repeated header counts, as for every other header the edge reads."""
    client = interaction = None
    for key, value in headers:
        if key == b"x-request-id" and client is None:
            client = value
        elif key == b"x-fapi-interaction-id" and interaction is None:
            interaction = value
    return Correlation(
        client.decode("ascii") if client is not None and _TOKEN.fullmatch(client) else None,
        interaction.decode("ascii") if interaction is not None and _UUID.fullmatch(interaction)
        else uuid4())

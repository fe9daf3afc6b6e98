"""HTTP/1.x requests in clear (RFC 9112): the request line and the Host header of a TCP stream.

Conferencing clients rarely speak plain HTTP, but captures carry it (captive portals, update
checks, WebSocket upgrades behind proxies), and the Host header names the server like an SNI.
Pure functions, never raise.
"""

from __future__ import annotations

from analyzer.dissect.names import host_name
from analyzer.dissect.spec import Dissector, FlowContext, Hook

METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"OPTIONS ", b"DELETE ", b"PATCH ", b"CONNECT ")
_HEAD_LIMIT = 4096  # the Host header sits in the first lines; never scan a whole body


def is_request(data: bytes) -> bool:
    """A stream that opens with an HTTP/1.x request line."""
    return data.startswith(METHODS)


def request_host(data: bytes) -> str | None:
    """The Host header of the request at the start of `data`, without its port, or None."""
    head = data[:_HEAD_LIMIT].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"host":
            text = value.strip().decode("ascii", "replace")
            # host:port, but an IPv6 literal has more than one colon and stays whole.
            return host_name(text.rsplit(":", 1)[0] if text.count(":") == 1 else text)
    return None


def _tcp(ctx: FlowContext) -> None:
    c2s = ctx.streams[0]
    if is_request(c2s):
        ctx.facts.proto("http")
        ctx.facts.first("http_host", request_host(c2s))


DISSECTOR = Dissector(
    name="http",
    facts=(("http_host", "str"),),
    labels=(("http", 90),),
    tcp_flow=(Hook(40, _tcp),),
)

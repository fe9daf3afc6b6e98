"""HTTP/1.x request host (analyzer/dissect/http.py), alone and inside the flow dissection."""

from __future__ import annotations

from analyzer.dissect import http
from tests.test_dissect_flows import _dissect


def test_request_host_strips_the_port_but_not_an_ipv6_literal() -> None:
    assert http.request_host(b"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n") == "example.com"
    assert http.request_host(b"GET / HTTP/1.1\r\nhost:  [2001:db8::1]\r\n\r\n") == "[2001:db8::1]"
    # The Host header of the body is not the request's.
    assert http.request_host(b"POST / HTTP/1.1\r\nX: y\r\n\r\nHost: body.example\r\n") is None


def test_hostile_requests_give_no_host() -> None:
    assert http.request_host(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n") is None
    assert http.request_host(b"GET / HTTP/1.1\r\nHost: \x1b[31mred\r\n\r\n") is None
    assert http.request_host(b"GET / HTTP/1.1\r\nHost: " + b"a" * 300 + b"\r\n\r\n") is None
    assert not http.is_request(b"\x16\x03\x01") and http.is_request(b"CONNECT x:443 HTTP/1.1\r\n")


def test_http_flow_names_its_server() -> None:
    flows, d = _dissect("hls.pcapng")
    named = d.facts["http_host"].dropna()
    assert len(named) >= 1
    for fid, host in named.items():
        flow = flows.set_index("flow_id").loc[fid]
        assert "http" in d.facts.loc[fid, "protocols"] and flow["transport"] == "tcp"
        assert host == flow["server_ip"]  # this capture's requests name the server by address

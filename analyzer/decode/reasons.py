"""Why a frame produced no flow 5-tuple; the counts appear in every report."""

from __future__ import annotations

OK = 0
NON_IP = 1
UNKNOWN_LINKTYPE = 2
TRUNCATED_LINK = 3
BAD_IP_HEADER = 4
TRUNCATED_TRANSPORT = 5
FRAGMENT_ORPHAN = 6
EMPTY_FRAME = 7

REASON_NAMES = {
    NON_IP: "non_ip",
    UNKNOWN_LINKTYPE: "unknown_linktype",
    TRUNCATED_LINK: "truncated_link_header",
    BAD_IP_HEADER: "bad_ip_header",
    TRUNCATED_TRANSPORT: "truncated_transport_header",
    FRAGMENT_ORPHAN: "ip_fragment_without_first",
    EMPTY_FRAME: "empty_frame",
}

# Encapsulations seen on the way to the innermost IP header (bit flags kept per flow).
ENCAP_VLAN = 1
ENCAP_MPLS = 2
ENCAP_PPPOE = 4
ENCAP_GRE = 8
ENCAP_IPIP = 16
ENCAP_GTP = 32
ENCAP_VXLAN = 64
ENCAP_PPP = 128
ENCAP_ERSPAN = 256

ENCAP_NAMES = {
    ENCAP_VLAN: "vlan",
    ENCAP_MPLS: "mpls",
    ENCAP_PPPOE: "pppoe",
    ENCAP_GRE: "gre",
    ENCAP_IPIP: "ip-in-ip",
    ENCAP_GTP: "gtp-u",
    ENCAP_VXLAN: "vxlan",
    ENCAP_PPP: "ppp",
    ENCAP_ERSPAN: "erspan",
}


def encap_label(bits: int) -> str:
    return ",".join(name for flag, name in ENCAP_NAMES.items() if bits & flag)

"""What one session's dissection may hold in memory, whatever the capture contains.

The scan already bounds the payload samples (packets per flow, bytes per packet), so every parser's
input is bounded; what a parser builds from that input must be bounded too. Handshake reassembly
(DTLS fragments) can claim far more memory than arrived (a 12-byte fragment header announces a
256 KiB message), and the DNS answer table grows with every flow. Both draw from one Budget per
session; what does not fit is dropped and counted in `cuts`, which the session reports as a warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Per session (one `dissect_flows` call). Documented in SECURITY.md ("Bounds").
SESSION_REASSEMBLY_BYTES = 64 << 20  # fragment bytes held for reassembly, summed over all flows
SESSION_REASSEMBLY_MESSAGES = 100_000  # handshake messages reassembled from fragments, all flows
SESSION_DNS_ROWS = 100_000  # (address, name) answers kept for host-name attribution

CUT_LABELS = {
    "dtls_flow_messages": "DTLS handshake fragments not reassembled: over 16 messages in one flow",
    "dtls_flow_bytes": "DTLS handshake fragments not reassembled: over 1 MiB held in one flow",
    "dtls_message_pieces": "DTLS handshake fragments not reassembled: over 64 fragments in one message",
    "dtls_session": "DTLS handshake fragments not reassembled: session reassembly budget spent",
    "dns_rows": "DNS answers not kept: over 100000 in the session",
}


@dataclass
class Budget:
    reassembly_bytes: int = SESSION_REASSEMBLY_BYTES
    reassembly_messages: int = SESSION_REASSEMBLY_MESSAGES
    dns_rows: int = SESSION_DNS_ROWS
    cuts: Counter = field(default_factory=Counter)

    def take(self, nbytes: int, messages: int = 0) -> bool:
        """Reserve reassembly memory; False (and nothing taken) when the session budget is spent."""
        if nbytes > self.reassembly_bytes or messages > self.reassembly_messages:
            return False
        self.reassembly_bytes -= nbytes
        self.reassembly_messages -= messages
        return True

    def cut(self, reason: str, n: int = 1) -> None:
        self.cuts[reason] += n

    def warnings(self) -> list[str]:
        """One line per kind of cut, for the capture's warnings."""
        return [f"{n} {CUT_LABELS.get(reason, reason)}" for reason, n in sorted(self.cuts.items())]

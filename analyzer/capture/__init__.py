"""Capture containers (pcap, pcapng, gzip) -> FrameChunks of bounded size."""

from analyzer.capture.model import CaptureInfo, FrameChunk, Interface
from analyzer.capture.reader import CaptureReader

__all__ = ["CaptureInfo", "CaptureReader", "FrameChunk", "Interface", "open_capture"]


def open_capture(source, **kwargs) -> CaptureReader:
    """Open a capture from a path, bytes or a binary file object."""
    return CaptureReader(source, **kwargs)

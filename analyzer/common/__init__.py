"""Small helpers every stage may use: the optional C extensions' loader, integer hashing, row
conversion. Nothing here imports another part of confscope."""

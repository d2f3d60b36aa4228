"""Escape attempt: use far more memory than allowed (bytearray touches every page)."""

import sys

block = bytearray(int(sys.argv[1]) * 1024 * 1024)
print("allocated", len(block))

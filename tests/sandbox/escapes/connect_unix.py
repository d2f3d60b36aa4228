"""Escape attempt: connect to a unix socket on the host (as one would to the Docker socket)."""

import json
import socket
import sys

client = socket.socket(socket.AF_UNIX)
try:
    client.settimeout(3)
    client.connect(sys.argv[1])
    client.sendall(b"hello from the sandbox")
    print(json.dumps({"connected": True}))
except OSError as error:
    print(json.dumps({"connected": False, "error": repr(error)}))

"""Escape attempt: reach a server the test runs on the host's loopback. Prints a JSON report."""

import json
import socket
import sys

port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    print(json.dumps({"connected": True}))
except OSError as error:
    print(json.dumps({"connected": False, "error": repr(error)}))

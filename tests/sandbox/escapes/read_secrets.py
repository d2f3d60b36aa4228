"""Escape attempt: print the whole environment and the content of each file given."""

import json
import os
import sys

files = {}
for path in sys.argv[1:]:
    try:
        with open(path, errors="replace") as handle:
            files[path] = handle.read()
    except OSError as error:
        files[path] = f"unreadable: {error.strerror}"
print(json.dumps({"env": dict(os.environ), "files": files}))

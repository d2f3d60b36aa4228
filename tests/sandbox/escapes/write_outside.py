"""Escape attempt: write each path given. Prints {path: "written" | errno name}."""

import errno
import json
import sys

report = {}
for path in sys.argv[1:]:
    try:
        with open(path, "w") as handle:
            handle.write("escaped\n")
        report[path] = "written"
    except OSError as error:
        report[path] = errno.errorcode.get(error.errno, str(error.errno))
print(json.dumps(report))

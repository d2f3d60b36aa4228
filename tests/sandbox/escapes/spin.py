"""Escape attempt: outlive the time limit, with a child process that would keep running."""

import subprocess
import sys

marker = sys.argv[1]
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
print("spawned", flush=True)
while True:
    pass

"""Start a background child that would outlive this script, then exit successfully."""

import subprocess
import sys

marker = sys.argv[1]
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
print("left a child behind", flush=True)

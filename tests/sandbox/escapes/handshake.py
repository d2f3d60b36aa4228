"""Prove stderr is streamed live: wait for a file that the test's on_output callback creates."""

import os
import sys
import time

print("ready", file=sys.stderr, flush=True)
deadline = time.monotonic() + 20
while not os.path.exists("go"):
    if time.monotonic() > deadline:
        print("nobody answered", file=sys.stderr)
        sys.exit(3)
    time.sleep(0.05)
os.makedirs("out/nested", exist_ok=True)
with open("out/nested/labels.csv", "w") as handle:
    handle.write("id,label\n1,positive\n")
print("done")

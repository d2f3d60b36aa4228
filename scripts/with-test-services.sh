#!/usr/bin/env bash
# Runs a command (the test suite) with the services the tests use: bubblewrap for the process
# sandbox, a private Docker engine with a locally built base image (see docker-engine.sh), and
# Chromium for the run-report test.
# Needs root and apt-get to install them; elsewhere the tests use what the machine has, and the
# Docker tests skip with a reason when no engine answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  eval "$(scripts/docker-engine.sh)"
  scripts/install-chromium.sh
else
  echo "note: not root with apt-get: the sandbox and Docker tests use what is installed" >&2
fi
exec "$@"

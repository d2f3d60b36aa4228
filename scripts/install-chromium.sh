#!/usr/bin/env bash
# Installs Debian's chromium, the headless browser tests/test_report.py loads the run report in,
# where apt-get is available (root). Without it that test skips and says why.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: install chromium (Debian package 'chromium') to test the run report in a browser" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null

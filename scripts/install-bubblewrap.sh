#!/usr/bin/env bash
# Installs bubblewrap, the process sandbox's isolation, where apt-get is available (root).
set -euo pipefail
command -v bwrap >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
  echo "note: install bubblewrap with your package manager for sandboxed runs" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null

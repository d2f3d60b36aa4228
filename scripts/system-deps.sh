#!/usr/bin/env bash
# Installs the system packages the test suite uses, when this machine allows it:
# bubblewrap (the process sandbox). Needs root and apt-get; elsewhere it says what is missing.
set -euo pipefail
packages=(bubblewrap)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: install ${missing[*]} for the sandbox tests (needs root and apt-get)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}" >&2

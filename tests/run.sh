#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a Debian
# machine, then runs lint, types and the whole suite inside a private network
# namespace that has only the loopback interface.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need=()
for pkg in chromium fonts-liberation firefox-esr iproute2 ffmpeg util-linux coturn nftables linux-perf; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
  # the tests start their own coturn on loopback: no system TURN server left running
  if [[ " ${need[*]} " == *" coturn "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check sfu signaling config tests bench
echo "== mypy"
.venv/bin/mypy sfu signaling config

echo "== pytest (private network namespace, loopback only)"
if [ "$(id -u)" = 0 ]; then NS=(unshare -n); else NS=(unshare -rn); fi
"${NS[@]}" sh -c 'ip link set lo up && (ip route add default dev lo src 127.0.0.1 2>/dev/null || true) && exec "$@"' sh \
  .venv/bin/python -m pytest -p no:cacheprovider -q "$@"

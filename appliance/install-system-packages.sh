#!/usr/bin/env bash
# Debian packages the box and its tests use. Run as root (CI does; use sudo otherwise).
# One list, used by .ci/run, the README and the balena Dockerfiles.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  nats-server   # the service bus when nodes are split (and the multi-node tests)
  openssl       # TLS certificates
  ca-certificates
)
apt-get update
apt-get install -y --no-install-recommends "${PACKAGES[@]}"

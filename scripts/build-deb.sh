#!/usr/bin/env bash
# Builds the Debian package target/debian/pgmoneta_<version>_<arch>.deb with dpkg-deb: the
# binaries, their man pages and pgmoneta-cli's shell completions (generated from the programs'
# own command-line definitions), the example configuration in /etc/pgmoneta (conffiles), the
# systemd unit and the maintainer scripts of packaging/.
#
#   scripts/build-deb.sh            # release build, xz-compressed package
#   scripts/build-deb.sh dev        # the debug build (stripped), quick to compress: for tests
#
# Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-release}"
case "$profile" in
    release) out_dir=target/release compress=(-Zxz) ;;
    dev) out_dir=target/debug compress=(-Zgzip -z1) ;;
    *) echo "usage: $0 [release|dev]" >&2; exit 2 ;;
esac
cargo build --profile "$profile" --locked -p pgmoneta-daemon -p pgmoneta-cli --bins >&2

version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
arch=$(dpkg --print-architecture)
stage=target/debian/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/man/man1" "$stage/etc/pgmoneta" \
    "$stage/lib/systemd/system" "$stage/usr/share/doc/pgmoneta" \
    "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d"

programs=(pgmoneta pgmoneta-cli pgmoneta-admin pgmoneta-walinfo pgmoneta-walfilter pgmoneta-config)
for p in "${programs[@]}"; do
    install -m 0755 "$out_dir/$p" "$stage/usr/bin/$p"
    # Release builds carry no symbols already; debug builds lose their debug information.
    strip --strip-debug "$stage/usr/bin/$p"
done

# Manual pages: from each program's own definition, and by hand for pgmoneta-walfilter.
for p in pgmoneta pgmoneta-admin pgmoneta-walinfo pgmoneta-config; do
    "$out_dir/$p" --man-page > "$stage/usr/share/man/man1/$p.1"
done
"$out_dir/pgmoneta-cli" man > "$stage/usr/share/man/man1/pgmoneta-cli.1"
cp packaging/man/pgmoneta-walfilter.1 "$stage/usr/share/man/man1/"
for page in "$stage"/usr/share/man/man1/*.1; do
    [ -s "$page" ] || { echo "empty manual page $page" >&2; exit 1; }
    gzip -9n "$page"
done
"$out_dir/pgmoneta-cli" completions bash > "$stage/usr/share/bash-completion/completions/pgmoneta-cli"
"$out_dir/pgmoneta-cli" completions zsh > "$stage/usr/share/zsh/vendor-completions/_pgmoneta-cli"
"$out_dir/pgmoneta-cli" completions fish > "$stage/usr/share/fish/vendor_completions.d/pgmoneta-cli.fish"

install -m 0640 packaging/pgmoneta.conf "$stage/etc/pgmoneta/pgmoneta.conf"
install -m 0644 packaging/pgmoneta_cli.conf "$stage/etc/pgmoneta/pgmoneta_cli.conf"
install -m 0644 packaging/pgmoneta.service packaging/pgmoneta-backup@.service packaging/pgmoneta-backup@.timer \
    "$stage/lib/systemd/system/"
install -D -m 0644 packaging/grafana/pgmoneta.json "$stage/usr/share/pgmoneta/grafana/pgmoneta.json"
install -m 0644 packaging/debian/README.Debian "$stage/usr/share/doc/pgmoneta/README.Debian"
cat > "$stage/usr/share/doc/pgmoneta/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pgmoneta-rs

Files: *
License: BSD-3-Clause
 See /usr/share/common-licenses/BSD.
COPYRIGHT
for s in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$s" "$stage/DEBIAN/$s"
done
printf '/etc/pgmoneta/pgmoneta.conf\n/etc/pgmoneta/pgmoneta_cli.conf\n' > "$stage/DEBIAN/conffiles"
installed=$(du -sk --exclude=DEBIAN "$stage" | awk '{print $1}')
cat > "$stage/DEBIAN/control" <<CONTROL
Package: pgmoneta
Version: $version
Architecture: $arch
Maintainer: pgmoneta-rs developers <pgmoneta-rs@localhost>
Installed-Size: $installed
Depends: libc6 (>= 2.34), libssl3 (>= 3.0.0), zlib1g, adduser
Suggests: postgresql-client
Section: database
Priority: optional
Homepage: https://pgmoneta.github.io/
Description: backup and restore for PostgreSQL 14 to 18
 A daemon that streams each configured server's WAL over the replication
 protocol, takes full and incremental base backups, stores them compressed and
 encrypted, verifies them, applies retention and restores to any point in time,
 with pgmoneta-cli to drive it and Prometheus metrics. Compatible with pgmoneta's
 configuration files, management protocol and backup layout.
CONTROL

deb="target/debian/pgmoneta_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >&2
echo "$deb"

#!/usr/bin/env bash
# Installs the Debian package built by scripts/build-deb.sh on this machine and tries it as an
# operator would, as root: the pgmoneta user and directories exist with their owners and modes,
# the daemon started with the unit's own ExecStart line as the unit's user (systemd's part
# played here: the runtime directory, NOTIFY_SOCKET) says READY, backs up a throwaway
# PostgreSQL 15 and stops on SIGTERM; then `dpkg -r` and `dpkg -P` remove it, keeping the
# repository. For CI machines: it changes the system (a package, a user) and cleans up after.
#
#   scripts/test-deb.sh target/debian/pgmoneta_<version>_<arch>.deb
set -euo pipefail

deb="$1"
pg_bin=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/pgmoneta-deb-test.XXXXXX)
chmod 0755 "$work"
daemon_pid=""
fail() { echo "test-deb: $*" >&2; exit 1; }
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    dpkg -P pgmoneta >/dev/null 2>&1 || true
    rm -rf /var/lib/pgmoneta "$work"
    userdel pgmoneta 2>/dev/null || true
    groupdel pgmoneta 2>/dev/null || true
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || fail "run as root"
if id pgmoneta >/dev/null 2>&1 || dpkg -s pgmoneta >/dev/null 2>&1; then
    fail "a pgmoneta user or package already exists on this machine; refusing to touch it"
fi

echo "== dpkg -i"
dpkg -i "$deb"
id pgmoneta >/dev/null || fail "no pgmoneta user"
[ "$(stat -c '%U:%G %a' /etc/pgmoneta)" = "pgmoneta:pgmoneta 750" ] || fail "/etc/pgmoneta: $(stat -c '%U:%G %a' /etc/pgmoneta)"
[ "$(stat -c '%U:%G %a' /etc/pgmoneta/pgmoneta.conf)" = "pgmoneta:pgmoneta 640" ] || fail "pgmoneta.conf mode"
[ "$(stat -c '%U:%G %a' /var/lib/pgmoneta)" = "pgmoneta:pgmoneta 750" ] || fail "/var/lib/pgmoneta mode"
[ "$(stat -c '%U' /var/log/pgmoneta)" = pgmoneta ] || fail "/var/log/pgmoneta owner"
for p in pgmoneta pgmoneta-cli pgmoneta-admin pgmoneta-walinfo pgmoneta-walfilter pgmoneta-config; do
    [ -x "/usr/bin/$p" ] || fail "no /usr/bin/$p"
    [ -s "/usr/share/man/man1/$p.1.gz" ] || fail "no manual page for $p"
done
[ -s /usr/share/pgmoneta/grafana/pgmoneta.json ] || fail "no Grafana dashboard"
zcat /usr/share/man/man1/pgmoneta-cli.1.gz | grep -q '^\.TH' || fail "pgmoneta-cli.1 is not a manual page"
bash -n /usr/share/bash-completion/completions/pgmoneta-cli || fail "the bash completion does not parse"

echo "== a PostgreSQL 15 to back up"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
install -d -o postgres -m 0700 "$work/pg"
echo postgres-secret > "$work/pwfile"
chown postgres "$work/pwfile"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" -A scram-sha-256 --pwfile="$work/pwfile" -U postgres >/dev/null
cat >> "$work/pg/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
CONF
echo "host replication repl 127.0.0.1/32 scram-sha-256" >> "$work/pg/pg_hba.conf"
echo "host all repl 127.0.0.1/32 scram-sha-256" >> "$work/pg/pg_hba.conf"
touch "$work/pg.log" && chown postgres "$work/pg.log"
chmod 0777 "$work"
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
PGPASSWORD=postgres-secret "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc \
    "CREATE ROLE repl WITH LOGIN REPLICATION PASSWORD 'repl-secret'; CREATE TABLE t AS SELECT generate_series(1, 1000) AS i"

echo "== configure, as README.Debian says"
runuser -u pgmoneta -- env HOME=/var/lib/pgmoneta pgmoneta-admin -g master-key
runuser -u pgmoneta -- env HOME=/var/lib/pgmoneta pgmoneta-admin -f /etc/pgmoneta/pgmoneta_users.conf -U repl -P repl-secret user add
runuser -u pgmoneta -- pgmoneta-config set /etc/pgmoneta/pgmoneta.conf primary host 127.0.0.1
runuser -u pgmoneta -- pgmoneta-config set /etc/pgmoneta/pgmoneta.conf primary port "$port"
[ "$(pgmoneta-config get /etc/pgmoneta/pgmoneta.conf primary port)" = "$port" ] || fail "pgmoneta-config set"
grep -q '^# One section per PostgreSQL server' /etc/pgmoneta/pgmoneta.conf || fail "pgmoneta-config lost a comment"

echo "== the unit's ExecStart, as its User, with systemd's runtime directory and notify socket"
unit=/lib/systemd/system/pgmoneta.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
[ "$user" = pgmoneta ] || fail "the unit runs as $user"
install -d -o pgmoneta -g pgmoneta -m 0750 /run/pgmoneta
notify="$work/notify"
python3 - "$notify" > "$work/notifications" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
import os; os.chmod(sys.argv[1], 0o777)
s.settimeout(120)
while True:
    m = s.recv(4096).decode()
    print(m.replace("\n", " "), flush=True)
    if m.startswith("STOPPING=1"):
        break
PY
listener=$!
sleep 0.5
# shellcheck disable=SC2086
runuser -u "$user" -- env HOME=/var/lib/pgmoneta NOTIFY_SOCKET="$notify" $exec_start &
daemon_pid=$!
for _ in $(seq 1 300); do
    grep -q '^READY=1' "$work/notifications" && break
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited: $(tail -20 /var/log/pgmoneta/pgmoneta.log)"
    sleep 0.2
done
grep -q '^READY=1' "$work/notifications" || fail "no READY=1 from the daemon"
pgmoneta-cli ping
for _ in $(seq 1 150); do
    pgmoneta-cli -F json status | grep -q '"WalStreaming": *true' && break
    sleep 0.2
done
pgmoneta-cli backup primary
# The scheduled backup: the timer's service, its ExecStart as its User (a second later: labels
# are to the second).
sleep 1
backup_unit="/lib/systemd/system/pgmoneta-backup@.service"
[ -f "/lib/systemd/system/pgmoneta-backup@.timer" ] || fail "no backup timer"
scheduled=$(sed -n 's/^ExecStart=//p' "$backup_unit" | sed 's/%i/primary/g')
# shellcheck disable=SC2086
runuser -u "$(sed -n 's/^User=//p' "$backup_unit")" -- env HOME=/var/lib/pgmoneta $scheduled
listed=$(pgmoneta-cli -F json list-backup primary)
[ "$(echo "$listed" | grep -c '"Valid": *"yes"')" = 2 ] || fail "not two valid backups listed: $listed"
# SIGTERM to the daemon itself (runuser, its parent here, waits and passes its status on).
main_pid=$(sed -n 's/^READY=1 .*MAINPID=\([0-9]*\).*/\1/p' "$work/notifications")
[ "$main_pid" = "$(cat /run/pgmoneta/pgmoneta.all.pid)" ] || fail "MAINPID $main_pid is not the pidfile's"
[ "$(stat -c %U "/proc/$main_pid")" = pgmoneta ] || fail "the daemon does not run as pgmoneta"
kill -TERM "$main_pid"
wait "$daemon_pid" || fail "the daemon exited non-zero on SIGTERM"
daemon_pid=""
wait "$listener" || true
grep -q '^STOPPING=1' "$work/notifications" || fail "no STOPPING=1 from the daemon"
ls /var/lib/pgmoneta/backup/primary/backup/ | grep -q . || fail "no backup in the repository"

echo "== dpkg -r, then dpkg -P"
dpkg -r pgmoneta
[ ! -e /usr/bin/pgmoneta ] || fail "/usr/bin/pgmoneta left by dpkg -r"
[ -e /etc/pgmoneta/pgmoneta.conf ] || fail "dpkg -r removed a conffile"
dpkg -P pgmoneta
[ ! -e /etc/pgmoneta ] || fail "dpkg -P left /etc/pgmoneta: $(ls -A /etc/pgmoneta)"
[ ! -e /var/log/pgmoneta ] || fail "dpkg -P left /var/log/pgmoneta"
ls /var/lib/pgmoneta/backup/primary/backup/ | grep -q . || fail "purging removed the repository"
echo "test-deb: the package installs, runs, backs up, and removes cleanly"

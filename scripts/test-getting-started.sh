#!/usr/bin/env bash
# Runs docs/getting-started.md as an operator would, as root on a Debian machine with the
# distribution's PostgreSQL 15 (its cluster 15/main stopped, or not made yet): every ```sh block of the page in
# order, in one bash, with `set -euo pipefail`, and between them the checks written in the
# page's source as `<!-- test: <command> -->`. A failure names the page's line.
#
# Two commands of the page are played here by stand-ins put first on PATH, because CI machines
# have neither: `sudo` (root runs the command, `sudo -u USER` runs it as USER with USER's home)
# and `systemctl` (the units the package installs, started the way systemd starts them: the
# unit's ExecStart as its User, its RuntimeDirectory, a NOTIFY_SOCKET whose READY=1 `start`
# waits for; anything else it is asked is refused, so the page cannot use what is not tried).
#
# The machine is put back as it was: the cluster's data directory and configuration are copied
# aside first and back afterwards (or the cluster made for the test is dropped), the package is purged, its user and repository removed. It
# refuses to run when any of that would touch something it did not make.
#
#   scripts/test-getting-started.sh target/debian/pgmoneta_<version>_<arch>.deb
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
page="$repo/docs/getting-started.md"
deb=$(realpath "$1")
pg_data=/var/lib/postgresql/15/main
pg_etc=/etc/postgresql/15/main
restore_dir=/var/lib/postgresql/restore
fail() { echo "test-getting-started: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root"
command -v pg_createcluster >/dev/null || fail "no Debian PostgreSQL (apt install postgresql-15)"
for tool in jq curl pg_ctlcluster runuser python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done
if id pgmoneta >/dev/null 2>&1 || dpkg -s pgmoneta >/dev/null 2>&1; then
    fail "a pgmoneta user or package already exists on this machine; refusing to touch it"
fi
if pg_lsclusters -h | awk '$1 == 15 && $2 == "main" {print $4}' | grep -qv down; then
    fail "the 15/main cluster is running; this test changes it, so it only runs on a stopped one"
fi
[ ! -e "$restore_dir" ] || fail "$restore_dir exists; refusing to touch it"

work=$(mktemp -d /tmp/pgmoneta-first-hour.XXXXXX)
chmod 0755 "$work"
state="$work/systemd"
mkdir -p "$work/bin" "$state" "$work/saved" "$work/pkg"
# The distribution's cluster, made as installing the postgresql package makes it when it is
# missing (and dropped afterwards), else copied aside.
made_cluster=no
if [ -d "$pg_data" ] && [ -d "$pg_etc" ]; then
    cp -a "$pg_data" "$work/saved/data"
    cp -a "$pg_etc" "$work/saved/etc"
else
    [ ! -e "$pg_data" ] && [ ! -e "$pg_etc" ] || fail "half a 15/main cluster ($pg_data, $pg_etc); refusing to touch it"
    pg_createcluster 15 main >/dev/null
    made_cluster=yes
fi

cleanup() {
    local rc=$?
    set +e
    if [ -s "$state/pgmoneta.pid" ]; then
        kill -TERM "$(cat "$state/pgmoneta.pid")" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$(cat "$state/pgmoneta.pid")" 2>/dev/null || break; sleep 0.1; done
    fi
    [ -s "$state/listener.pid" ] && kill "$(cat "$state/listener.pid")" 2>/dev/null
    for d in "$restore_dir"/primary-*; do
        [ -f "$d/postmaster.pid" ] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$d" -m immediate stop >/dev/null 2>&1
    done
    pg_ctlcluster 15 main stop -m immediate >/dev/null 2>&1
    if [ $rc != 0 ] && [ -f /var/log/pgmoneta/pgmoneta.log ]; then
        echo "--- the last lines of /var/log/pgmoneta/pgmoneta.log" >&2
        tail -30 /var/log/pgmoneta/pgmoneta.log >&2
    fi
    rm -rf "$restore_dir"
    if [ $made_cluster = yes ]; then
        pg_dropcluster 15 main
    else
        rm -rf "$pg_data" "$pg_etc"
        cp -a "$work/saved/data" "$pg_data"
        cp -a "$work/saved/etc" "$pg_etc"
    fi
    dpkg -P pgmoneta >/dev/null 2>&1
    rm -rf /var/lib/pgmoneta /run/pgmoneta
    userdel pgmoneta 2>/dev/null
    groupdel pgmoneta 2>/dev/null
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

# `sudo`: this runs as root already.
cat > "$work/bin/sudo" <<'SH'
#!/usr/bin/env bash
user=root
while [ $# -gt 0 ]; do
    case "$1" in
        -u) user="$2"; shift 2 ;;
        --) shift; break ;;
        -*) echo "sudo (test stand-in): option $1 is not played here" >&2; exit 1 ;;
        *) break ;;
    esac
done
[ "$user" = root ] && exec "$@"
exec runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" PATH="$PATH" "$@"
SH

# `systemctl`: the package's units, as systemd would run them.
cat > "$work/bin/systemctl" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
state="${PGMONETA_TEST_SYSTEMD:?}"
units=/lib/systemd/system
no() { echo "systemctl (test stand-in): $*" >&2; exit 1; }
key() { sed -n "s/^$2=//p" "$1" | tail -1; }
main_pid() { cat "$state/pgmoneta.pid" 2>/dev/null || true; }
running() { local p; p=$(main_pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
readies() { grep -c '^READY=1' "$state/notifications" 2>/dev/null || true; }
wait_ready() {
    local before="$1" pid="$2"
    for _ in $(seq 1 600); do
        [ "$(readies)" -gt "$before" ] && return 0
        kill -0 "$pid" 2>/dev/null || no "pgmoneta.service exited before READY=1: $(cat "$state/pgmoneta.out")"
        sleep 0.1
    done
    no "no READY=1 from pgmoneta.service within 60 s"
}
start_service() {
    local unit="$units/pgmoneta.service" user dir
    running && return 0
    user=$(key "$unit" User)
    dir=$(key "$unit" RuntimeDirectory)
    install -d -o "$user" -g "$(key "$unit" Group)" -m "$(key "$unit" RuntimeDirectoryMode)" "/run/$dir"
    if [ ! -S "$state/notify" ]; then
        python3 - "$state/notify" >> "$state/notifications" 2>/dev/null <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
while True:
    print(s.recv(4096).decode().replace("\n", " "), flush=True)
PY
        echo $! > "$state/listener.pid"
        for _ in $(seq 1 50); do [ -S "$state/notify" ] && break; sleep 0.1; done
    fi
    local before; before=$(readies)
    # shellcheck disable=SC2046
    setsid runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" \
        NOTIFY_SOCKET="$state/notify" $(key "$unit" ExecStart) < /dev/null > "$state/pgmoneta.out" 2>&1 &
    wait_ready "$before" $!
    sed -n 's/^READY=1 .*MAINPID=\([0-9]*\).*/\1/p' "$state/notifications" | tail -1 > "$state/pgmoneta.pid"
}
oneshot() {
    local unit="$units/${1%@*}@.service" instance="${1#*@}"
    instance="${instance%.service}"
    [ -f "$unit" ] || no "no unit $unit"
    local user; user=$(key "$unit" User)
    # shellcheck disable=SC2046
    runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" $(key "$unit" ExecStart | sed "s/%i/$instance/g")
}
verb="$1"; shift
now=no
[ "${1:-}" = --now ] && { now=yes; shift; }
unit="${1:-}"
case "$verb:$unit" in
    daemon-reload:) ;;
    enable:pgmoneta | enable:pgmoneta.service)
        touch "$state/pgmoneta.enabled"
        if [ $now = yes ]; then start_service; fi ;;
    start:pgmoneta | start:pgmoneta.service) start_service ;;
    reload:pgmoneta | reload:pgmoneta.service)
        running || no "pgmoneta.service is not running"
        before=$(readies)
        kill -HUP "$(main_pid)"
        wait_ready "$before" "$(main_pid)" ;;
    stop:pgmoneta | stop:pgmoneta.service)
        if running; then
            kill -TERM "$(main_pid)"
            for _ in $(seq 1 600); do running || break; sleep 0.1; done
        fi ;;
    status:pgmoneta | status:pgmoneta.service)
        if running; then
            echo "● pgmoneta.service - $(key "$units/pgmoneta.service" Description)"
            echo "     Active: active (running); Main PID: $(main_pid)"
            echo "     Status: \"$(sed -n 's/.*STATUS=\(.*\)$/\1/p' "$state/notifications" | tail -1 | sed 's/ [A-Z_]*=.*//')\""
        else
            echo "● pgmoneta.service: inactive (dead)"; exit 3
        fi ;;
    enable:pgmoneta-backup@*.timer)
        t="$units/${unit%@*}@.timer"
        [ -f "$t" ] || no "no unit $t"
        grep -q '^OnCalendar=' "$t" || no "$t has no OnCalendar"
        [ -f "$units/${unit%@*}@.service" ] || no "no unit $units/${unit%@*}@.service"
        # Enabling a timer starts no backup: its next OnCalendar time does.
        touch "$state/$unit.enabled" ;;
    start:pgmoneta-backup@*.service) oneshot "$unit" ;;
    *) no "'systemctl $verb $unit' is not played here" ;;
esac
SH
chmod 0755 "$work/bin/sudo" "$work/bin/systemctl"

# The page's blocks, and the checks in its source, as one script: `# page line N` before each.
awk -v page="$page" '
    BEGIN { print "set -euo pipefail"; print "trap '\''echo \"test-getting-started: failed in the block or check at " page ":$__line\" >&2'\'' ERR" }
    /^```sh$/ { inside = 1; print "__line=" NR + 1; next }
    /^```/ && inside { inside = 0; next }
    inside { print; next }
    /^<!-- test: .* -->$/ { sub(/^<!-- test: /, ""); sub(/ -->$/, ""); print "__line=" NR; print; next }
' "$page" > "$work/first-hour.sh"
grep -q '^__line=' "$work/first-hour.sh" || fail "no sh blocks in $page"

echo "== PostgreSQL 15 (15/main), started as the page assumes"
pg_ctlcluster 15 main start

echo "== $page"
cp "$deb" "$work/pkg/"
cd "$work/pkg"
PATH="$work/bin:$PATH" PGMONETA_TEST_SYSTEMD="$state" bash -x "$work/first-hour.sh" 2>&1 | grep --line-buffered -v '^+ __line='
echo "test-getting-started: every block of docs/getting-started.md ran and every check held"

//! `pgmoneta-config`: a configuration written and edited without a daemon, untouched lines kept,
//! invalid results refused with the daemon's own diagnostics.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmoneta-config"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = tool(args, "");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = tool(args, "");
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn valid(path: &Path) {
    let parsed = pgmoneta_core::config::Config::load(path).unwrap();
    if let Err(e) = parsed.check() {
        panic!("{} is not valid: {e}\n{}", path.display(), std::fs::read_to_string(path).unwrap());
    }
}

#[test]
fn init_writes_a_configuration_the_daemon_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pgmoneta.conf");
    let c = conf.to_str().unwrap();
    ok(&["-q", "-o", c, "init"]);
    valid(&conf);
    assert_eq!(std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777, 0o640);
    assert!(fails(&["-q", "-o", c, "init"]).contains("-F"), "an existing file is not replaced without -F");
    ok(&["-q", "-F", "-o", c, "init"]);

    // Interactive: every default taken but the server's name and the required user, asked
    // again when left empty.
    let other = dir.path().join("asked.conf");
    let answers = "db1\n\n\n\n\n\n\n\n\n\n\n\n\nrepl\n\n";
    let out = tool(&["-o", other.to_str().unwrap(), "init"], answers);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let asked = String::from_utf8(out.stdout).unwrap();
    assert!(asked.contains("Replication user (its password goes in pgmoneta_users.conf) is required"), "{asked}");
    valid(&other);
    let o = other.to_str().unwrap();
    assert_eq!(ok(&["get", o, "db1", "user"]), "repl\n");
    assert_eq!(ok(&["ls", o]), "pgmoneta\ndb1\n");
}

#[test]
fn edits_keep_every_other_line_and_refuse_what_the_daemon_would() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pgmoneta.conf");
    let original = "# Our backups\n[pgmoneta]\nhost=*    # all addresses\nunix_socket_dir = /tmp\n\
                    base_dir   =   /srv/backup\n\n; production\n[primary]\nhost = db1\nport = 5432\n\
                    user = repl\nwal_slot = pgmoneta\n";
    std::fs::write(&conf, original).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = conf.to_str().unwrap();

    assert_eq!(ok(&["get", c, "pgmoneta", "base_dir"]), "/srv/backup\n");
    assert_eq!(ok(&["ls", c, "primary"]), "host\nport\nuser\nwal_slot\n");
    ok(&["set", c, "pgmoneta", "host", "127.0.0.1"]);
    ok(&["set", c, "pgmoneta", "compression", "lz4"]);
    // A new section is built key by key: what it still lacks is said, not refused.
    let out = tool(&["set", c, "replica", "host", "db2"], "");
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("[replica] still needs port, user, wal_slot"), "{said}");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(
        text,
        "# Our backups\n[pgmoneta]\nhost=127.0.0.1    # all addresses\nunix_socket_dir = /tmp\n\
         base_dir   =   /srv/backup\ncompression = lz4\n\n; production\n[primary]\nhost = db1\nport = 5432\n\
         user = repl\nwal_slot = pgmoneta\n\n[replica]\nhost = db2\n"
    );
    assert_eq!(std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777, 0o600, "the mode is kept");

    ok(&["del", c, "replica"]);
    valid(&conf);
    let before = std::fs::read(&conf).unwrap();
    // What the daemon would refuse is refused, with its diagnostics; the file stays as it was.
    let err = fails(&["set", c, "pgmoneta", "retention", "0"]);
    assert!(err.contains("retention") && err.contains("left unchanged"), "{err}");
    let err = fails(&["del", c, "pgmoneta", "base_dir"]);
    assert!(err.contains("base_dir") && err.contains("is required"), "{err}");
    let err = fails(&["set", c, "primary", "port", "many"]);
    assert!(err.contains("port"), "{err}");
    assert_eq!(std::fs::read(&conf).unwrap(), before);
    assert!(fails(&["get", c, "primary", "nosuch"]).contains("no nosuch in [primary]"));
    assert!(fails(&["del", c, "nosuch"]).contains("no section [nosuch]"));
    // Nothing was left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

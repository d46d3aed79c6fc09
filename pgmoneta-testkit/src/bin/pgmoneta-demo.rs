//! `pgmoneta-demo`: pgmoneta from start to finish on a throwaway PostgreSQL, in about a minute.
//!
//! It starts PostgreSQL from the local binaries, creates the master key, the users vault and the
//! configuration, starts the daemon, takes a backup with `pgmoneta-cli`, writes more rows,
//! restores to a point in time between them, starts PostgreSQL on the restore and checks that
//! exactly the expected rows are there. Every step prints the command an operator would type.
//! Everything lives in one directory under /tmp, removed at the end unless `--keep` is given.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgmoneta_testkit::Cluster;

const ROWS_IN_BACKUP: u32 = 1000;
const ROWS_BEFORE_TARGET: u32 = 500;
const ROWS_AFTER_TARGET: u32 = 250;

struct Demo {
    dir: PathBuf,
    bin: PathBuf,
    daemon: Option<Child>,
    keep: bool,
}

impl Demo {
    fn tool(&self, name: &str) -> PathBuf {
        let here = self.bin.join(name);
        if here.exists() {
            here
        } else {
            PathBuf::from(name)
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new(self.tool(name));
        c.args(args).env("HOME", self.home()).env("PGMONETA_ALLOW_ROOT", "1");
        c
    }

    /// Runs a tool, prints its command line and output; fails the demo if it fails.
    fn run(&self, name: &str, args: &[&str]) -> Result<String, String> {
        println!("  $ {name} {}", args.join(" "));
        let out = self.command(name, args).output().map_err(|e| format!("{name}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines() {
            println!("    {line}");
        }
        if !out.status.success() {
            return Err(format!("{name} {} failed:\n{text}{}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(text)
    }

    /// Runs `pgmoneta-cli -F raw` quietly and returns the reply.
    fn query(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let conf = self.dir.join("pgmoneta_cli.conf");
        let mut all = vec!["-c", conf.to_str().unwrap_or_default(), "-F", "raw"];
        all.extend_from_slice(args);
        let out = self.command("pgmoneta-cli", &all).output().map_err(|e| e.to_string())?;
        serde_json::from_slice(&out.stdout).map_err(|e| format!("pgmoneta-cli {}: {e}", args.join(" ")))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Some(mut d) = self.daemon.take() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let until = Instant::now() + limit;
    while !ok() {
        if Instant::now() > until {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    if std::env::args().any(|a| a == "--help" || a == "-?") {
        println!("pgmoneta-demo [--keep]: back up and restore a throwaway PostgreSQL to a point in time.");
        println!("--keep leaves PostgreSQL, the restored copy and the daemon running afterwards.");
        return;
    }
    match run(keep) {
        Ok(()) => println!("\nThe demo succeeded."),
        Err(e) => {
            eprintln!("\npgmoneta-demo failed: {e}");
            std::process::exit(1);
        }
    }
}

fn run(keep: bool) -> Result<(), String> {
    let bin = std::env::current_exe().map_err(|e| e.to_string())?.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = tempfile::Builder::new().prefix("pgmoneta-demo-").tempdir_in("/tmp").map_err(|e| e.to_string())?.keep();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir.join("home")).map_err(|e| e.to_string())?;
    let mut demo = Demo { dir: dir.clone(), bin, daemon: None, keep };
    println!("pgmoneta demo in {}", dir.display());

    step(1, "Start a throwaway PostgreSQL (initdb, wal_level = replica, a replication role).");
    let source = Cluster::builder().start().map_err(|e| e.to_string())?;
    println!(
        "  PostgreSQL {} on 127.0.0.1:{} (data in {})",
        source.version().major(),
        source.port(),
        source.data_dir().display()
    );

    step(2, "Create the master key and put the replication role's password in the users vault.");
    let users = dir.join("pgmoneta_users.conf");
    demo.run("pgmoneta-admin", &["-P", "a demo master key", "master-key"])?;
    demo.run(
        "pgmoneta-admin",
        &[
            "-f",
            users.to_str().unwrap_or_default(),
            "-U",
            source.replication_user(),
            "-P",
            source.replication_password(),
            "user",
            "add",
        ],
    )?;

    step(3, "Write pgmoneta.conf: one server, zstd compression, AES encryption.");
    let conf = dir.join("pgmoneta.conf");
    let text = format!(
        "[pgmoneta]\nhost = 127.0.0.1\nunix_socket_dir = {d}\nbase_dir = {d}/backup\ncompression = zstd\n\
         encryption = aes\nworkers = 2\nlog_type = file\nlog_path = {d}/pgmoneta.log\n\n\
         [primary]\nhost = 127.0.0.1\nport = {p}\nuser = {u}\nwal_slot = pgmoneta\ncreate_slot = yes\n",
        d = dir.display(),
        p = source.port(),
        u = source.replication_user()
    );
    std::fs::write(&conf, &text).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("pgmoneta_cli.conf"), format!("unix_socket_dir = {}\n", dir.display()))
        .map_err(|e| e.to_string())?;
    for line in text.lines() {
        println!("    {line}");
    }

    step(4, "Start the daemon; it creates the slot and streams WAL.");
    println!("  $ pgmoneta -c {} -u {}", conf.display(), users.display());
    let child = demo
        .command("pgmoneta", &["-c", conf.to_str().unwrap_or_default(), "-u", users.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("pgmoneta: {e}"))?;
    demo.daemon = Some(child);
    wait_for("the daemon", Duration::from_secs(60), || {
        demo.query(&["status"]).is_ok_and(|v| v["Response"]["Servers"][0]["WalStreaming"] == true)
    })?;
    let cli_conf = dir.join("pgmoneta_cli.conf");
    let c = cli_conf.to_str().unwrap_or_default();
    demo.run("pgmoneta-cli", &["-c", c, "status"])?;

    step(5, &format!("Create a table with {ROWS_IN_BACKUP} rows and take a backup."));
    source
        .execute(&format!("CREATE TABLE demo (n int, at timestamptz DEFAULT now()); INSERT INTO demo (n) SELECT generate_series(1, {ROWS_IN_BACKUP})"))
        .map_err(|e| e.to_string())?;
    demo.run("pgmoneta-cli", &["-c", c, "backup", "primary"])?;
    demo.run("pgmoneta-cli", &["-c", c, "list-backup", "primary"])?;

    step(
        6,
        &format!(
            "Write {ROWS_BEFORE_TARGET} more rows, note the WAL position, then {ROWS_AFTER_TARGET} rows after it."
        ),
    );
    let first = ROWS_IN_BACKUP + 1;
    let target_rows = ROWS_IN_BACKUP + ROWS_BEFORE_TARGET;
    source
        .execute(&format!("INSERT INTO demo (n) SELECT generate_series({first}, {target_rows})"))
        .map_err(|e| e.to_string())?;
    let target = source.query_scalar("SELECT pg_current_wal_lsn()").map_err(|e| e.to_string())?;
    println!("  target position: {target} ({target_rows} rows)");
    let last = target_rows + ROWS_AFTER_TARGET;
    source
        .execute(&format!("INSERT INTO demo (n) SELECT generate_series({}, {last})", target_rows + 1))
        .map_err(|e| e.to_string())?;
    source.switch_wal().map_err(|e| e.to_string())?;
    let end = source.query_scalar("SELECT pg_current_wal_lsn()").map_err(|e| e.to_string())?;
    let end = parse_lsn(&end)?;
    wait_for("the WAL to reach the archive", Duration::from_secs(60), || {
        demo.query(&["status"])
            .ok()
            .and_then(|v| v["Response"]["Servers"][0]["WalFlushed"].as_str().map(str::to_owned))
            .and_then(|s| parse_lsn(&s).ok())
            .is_some_and(|f| f >= end)
    })?;

    step(7, "Restore the backup to that position and start PostgreSQL on it.");
    let restore_dir = dir.join("restore");
    let position = format!("lsn={target},action=promote");
    demo.run(
        "pgmoneta-cli",
        &["-c", c, "restore", "primary", "newest", &position, restore_dir.to_str().unwrap_or_default()],
    )?;
    let label = demo.query(&["list-backup", "primary"])?["Response"]["Backups"][0]["Backup"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let data_dir = restore_dir.join(format!("primary-{label}"));
    std::fs::set_permissions(&restore_dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    println!("  $ pg_ctl -D {} start", data_dir.display());
    let copy = Cluster::start_on(source.install().clone(), &data_dir, source.superuser_password())
        .map_err(|e| e.to_string())?;
    wait_for("recovery to finish", Duration::from_secs(120), || {
        copy.query_scalar("SELECT pg_is_in_recovery()").is_ok_and(|r| r == "f")
    })?;

    step(8, "Check the rows.");
    let count: u32 =
        copy.query_scalar("SELECT count(*) FROM demo").map_err(|e| e.to_string())?.parse().map_err(|_| "count")?;
    let max = copy.query_scalar("SELECT max(n) FROM demo").map_err(|e| e.to_string())?;
    println!("  source: {last} rows; restored copy: {count} rows (max n = {max}); expected {target_rows}");
    if count != target_rows {
        return Err(format!("the restore has {count} rows, expected {target_rows}"));
    }

    if keep {
        println!("\nLeft running (--keep):");
        println!("  source PostgreSQL: psql -h 127.0.0.1 -p {} -U postgres", source.port());
        println!("  restored copy:     psql -h 127.0.0.1 -p {} -U postgres", copy.port());
        println!("  daemon:            HOME={} pgmoneta-cli -c {} status", demo.home().display(), cli_conf.display());
        println!("  stop the daemon:   HOME={} pgmoneta-cli -c {} shutdown", demo.home().display(), cli_conf.display());
        println!("  files:             {}", dir.display());
        std::mem::forget(copy);
        std::mem::forget(source);
    } else {
        println!("\nCleaning up (use --keep to leave everything running).");
    }
    Ok(())
}

fn parse_lsn(s: &str) -> Result<u64, String> {
    let (hi, lo) = s.trim().split_once('/').ok_or_else(|| format!("not an LSN: {s}"))?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| format!("not an LSN: {s}"))?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| format!("not an LSN: {s}"))?;
    Ok(hi << 32 | lo)
}

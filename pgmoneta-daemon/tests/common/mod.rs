//! Helpers shared by the daemon's integration test binaries.
#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgmoneta_core::Lsn;
use pgmoneta_crypto::{MasterKeyFile, Vault, VaultKind};
use pgmoneta_testkit::{Cluster, TestCa};
use serde_json::Value;

/// The password of the `admin` user in the admins vault.
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// A workspace binary; built when the test runs without the rest of the workspace.
pub fn bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_pgmoneta")).with_file_name(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "pgmoneta-cli", "--bins"]);
        // A bench runs release binaries.
        if path.parent().and_then(Path::file_name).is_some_and(|d| d == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building {name}");
    }
    path
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A directory under /tmp that the `postgres` user can enter.
pub fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A daemon with its own configuration, vaults, master key and repository.
pub struct Daemon {
    /// Everything lives here.
    pub dir: tempfile::TempDir,
    /// HOME of the daemon and of the CLI (master key).
    pub home: PathBuf,
    /// pgmoneta.conf.
    pub conf: PathBuf,
    /// pgmoneta_cli.conf.
    pub cli_conf: PathBuf,
    /// base_dir.
    pub base: PathBuf,
    /// The log file.
    pub log: PathBuf,
    /// Extra environment variables of the daemon.
    pub env: Vec<(String, String)>,
    /// Prometheus port.
    pub metrics_port: u16,
    /// Remote management port.
    pub management_port: u16,
    child: Option<Child>,
}

impl Daemon {
    /// Writes a configuration for `cluster` (server `primary`); `main_extra` lines go into
    /// `[pgmoneta]`.
    pub fn new(cluster: &Cluster, main_extra: &str) -> Daemon {
        let dir = tempfile::Builder::new().prefix("pgmoneta-daemon-").tempdir_in("/tmp").unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let key_file = MasterKeyFile::new(home.join(".pgmoneta").join("master.key"));
        key_file.create("a master key for tests").unwrap();
        let key = key_file.load().unwrap();
        let users = dir.path().join("pgmoneta_users.conf");
        let mut v = Vault::new(VaultKind::Users);
        v.add(&key, cluster.replication_user(), cluster.replication_password()).unwrap();
        v.save(&users).unwrap();
        let admins = dir.path().join("pgmoneta_admins.conf");
        let mut a = Vault::new(VaultKind::Admins);
        a.add(&key, "admin", ADMIN_PASSWORD).unwrap();
        a.save(&admins).unwrap();
        let base = dir.path().join("backup");
        let log = dir.path().join("pgmoneta.log");
        let (metrics_port, management_port) = (free_port(), free_port());
        let conf = dir.path().join("pgmoneta.conf");
        let text = format!(
            "[pgmoneta]\nhost = 127.0.0.1\nunix_socket_dir = {d}\nbase_dir = {b}\nmetrics = {metrics_port}\n\
             management = {management_port}\ncompression = zstd\nencryption = aes\nworkers = 2\n\
             log_type = file\nlog_path = {l}\nlog_level = info\nretention = 7\n{main_extra}\n\n\
             [primary]\nhost = 127.0.0.1\nport = {p}\nuser = {u}\nwal_slot = pgmoneta\ncreate_slot = yes\n",
            d = dir.path().display(),
            b = base.display(),
            l = log.display(),
            p = cluster.port(),
            u = cluster.replication_user(),
        );
        std::fs::write(&conf, text).unwrap();
        let cli_conf = dir.path().join("pgmoneta_cli.conf");
        std::fs::write(&cli_conf, format!("[pgmoneta-cli]\nunix_socket_dir = {}\n", dir.path().display())).unwrap();
        Daemon { dir, home, conf, cli_conf, base, log, env: Vec::new(), metrics_port, management_port, child: None }
    }

    /// The management socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(".s.pgmoneta")
    }

    /// The pidfile.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.path().join("pgmoneta.127.0.0.1.pid")
    }

    /// `pgmoneta -c <conf> -u <users>` with this daemon's HOME, allowed to run as root.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgmoneta"));
        c.arg("-c").arg(&self.conf).arg("-u").arg(self.dir.path().join("pgmoneta_users.conf"));
        c.env("HOME", &self.home).env("PGMONETA_ALLOW_ROOT", "1").envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Starts the daemon and waits until it answers `ping`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already started");
        let child = self
            .command()
            .arg("-A")
            .arg(self.dir.path().join("pgmoneta_admins.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("pgmoneta exited with {status} at start-up:\n{}", self.log_text());
            }
            if self.socket().exists() && self.cli(&["ping"]).0 == 0 {
                return;
            }
            assert!(Instant::now() < until, "pgmoneta did not answer ping:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGKILL and returns the dead process without reaping it, as a supervisor sees it
    /// the moment it restarts the service.
    pub fn kill9_unreaped(&mut self) -> Child {
        let c = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        c
    }

    /// Waits for the daemon to die of SIGKILL (a crash point); panics on any other end.
    pub fn wait_killed(&mut self, within: Duration) {
        use std::os::unix::process::ExitStatusExt;
        let mut c = self.child.take().expect("running");
        let until = Instant::now() + within;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                assert_eq!(
                    s.signal(),
                    Some(9),
                    "pgmoneta ended with {s}, not by its crash point:\n{}",
                    self.log_text()
                );
                return;
            }
            if Instant::now() > until {
                let _ = c.kill();
                panic!("pgmoneta did not reach its crash point:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the daemon to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let mut c = self.child.take().expect("running");
        let until = Instant::now() + within;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > until {
                let _ = c.kill();
                panic!("pgmoneta did not exit:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `pgmoneta-cli -c <cli conf> -F raw <args>`; returns the exit status and the reply.
    pub fn cli(&self, args: &[&str]) -> (i32, Value) {
        let out = self.cli_command(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(text.trim()).unwrap_or(Value::String(format!(
            "{}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        )));
        (out.status.code().unwrap_or(-1), value)
    }

    /// The `pgmoneta-cli` command with this daemon's settings and `-F raw`.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("pgmoneta-cli"));
        c.arg("-c").arg(&self.cli_conf);
        if !args.contains(&"-F") {
            c.args(["-F", "raw"]);
        }
        c.args(args).env("HOME", &self.home);
        c
    }

    /// Runs the CLI and insists on success; returns the `Response`.
    pub fn ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.cli(args);
        assert_eq!(code, 0, "pgmoneta-cli {args:?} failed: {v}\n{}", self.log_text());
        assert_eq!(v["Outcome"]["Status"], true, "{v}");
        v["Response"].clone()
    }

    /// Runs the CLI, expects failure with `error` and a message saying why; returns the message.
    pub fn fails(&self, args: &[&str], error: u64) -> String {
        let (code, v) = self.cli(args);
        assert_ne!(code, 0, "pgmoneta-cli {args:?} should fail: {v}");
        assert_eq!(v["Outcome"]["Status"], false, "{v}");
        assert_eq!(v["Outcome"]["Error"], error, "pgmoneta-cli {args:?}: {v}");
        let message = v["Outcome"]["Message"].as_str().unwrap_or_default().to_owned();
        assert!(message.len() > 10, "pgmoneta-cli {args:?}: the failure carries no message: {v}");
        message
    }

    /// The status entry of `primary`.
    pub fn server_status(&self) -> Value {
        self.ok(&["status"])["Servers"][0].clone()
    }

    /// Waits until WAL streams from the server.
    pub fn wait_streaming(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.server_status()["WalStreaming"] != true {
            assert!(Instant::now() < until, "WAL never streamed:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the archive has WAL up to `lsn`.
    pub fn wait_flushed(&self, lsn: Lsn) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.server_status();
            let flushed: Lsn = s["WalFlushed"].as_str().unwrap_or("0/0").parse().unwrap();
            if flushed >= lsn {
                return;
            }
            assert!(Instant::now() < until, "WAL flushed only to {flushed}, waiting for {lsn}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits up to a minute for `ok`, failing with `what` and the daemon's log.
    pub fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(Instant::now() < until, "{what} did not happen:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Appends lines to pgmoneta.conf's `[pgmoneta]` section (before the server section).
    pub fn edit_main(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.conf).unwrap();
        assert!(text.contains(from), "{from:?} not in pgmoneta.conf");
        let mut f = std::fs::File::create(&self.conf).unwrap();
        f.write_all(text.replacen(from, to, 1).as_bytes()).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- pgmoneta log ---\n{}", self.log_text());
        }
    }
}

/// Starts PostgreSQL (as `source`'s installation and superuser) on a restored data directory
/// and waits until recovery has ended (up to five minutes).
pub fn start_restored(source: &Cluster, data_dir: &std::path::Path) -> Cluster {
    let copy = Cluster::start_on(source.install().clone(), data_dir, source.superuser_password()).unwrap();
    let until = Instant::now() + Duration::from_secs(300);
    while copy.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
        assert!(Instant::now() < until, "recovery did not end:\n{}", copy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    copy
}

/// A PostgreSQL cluster for the tests.
pub fn cluster() -> Cluster {
    Cluster::builder().start().unwrap()
}

/// A server certificate for `localhost` and 127.0.0.1, its key (mode 0600) and the CA that
/// signed it, written in `dir`: `(certificate, key, CA certificate)`.
pub fn localhost_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let ca = TestCa::new("pgmoneta test CA").unwrap();
    let server = ca.issue_server(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
    let (cert, key, ca_file) = (dir.join("server.crt"), dir.join("server.key"), dir.join("ca.crt"));
    std::fs::write(&cert, &server.cert_pem).unwrap();
    std::fs::write(&key, &server.key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    ca.write_cert(&ca_file).unwrap();
    (cert, key, ca_file)
}

/// A node's configuration lines: its cluster port, name and peers, TLS with a certificate
/// valid both ways.
pub fn node_lines(dir: &Path, ca: &TestCa, name: &str, port: u16, peers: &str) -> String {
    let issued = ca.issue_node(name, &["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
    let (cert, key, root) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")), dir.join("ca.crt"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    ca.write_cert(&root).unwrap();
    format!(
        "tls = on\ntls_cert_file = {}\ntls_key_file = {}\ntls_ca_file = {}\ncluster = {port}\ncluster_node = {name}\n\
         cluster_user = admin\ncluster_peers = {peers}\ncluster_heartbeat = 1s\ncluster_takeover = 3s\n",
        cert.display(),
        key.display(),
        root.display()
    )
}

/// Gives `to` the master key and vaults of `from`: nodes of a cluster share the master key
/// (a backup encrypted on one is restored on another) and the admins vault.
pub fn share_keys(from: &Daemon, to: &Daemon) {
    let key = from.home.join(".pgmoneta").join("master.key");
    std::fs::copy(&key, to.home.join(".pgmoneta").join("master.key")).unwrap();
    for vault in ["pgmoneta_users.conf", "pgmoneta_admins.conf"] {
        std::fs::copy(from.dir.path().join(vault), to.dir.path().join(vault)).unwrap();
    }
}

/// This node's role for `primary`, as `cluster status` says.
pub fn cluster_role(d: &Daemon) -> String {
    d.ok(&["cluster", "status"])["Servers"][0]["Role"].as_str().unwrap_or_default().to_owned()
}

/// Two cluster nodes `a` and `b` of `source` on cluster ports `ports`, sharing their master
/// key, started, and waited for until one is active and the other follows it. `dials` are the
/// ports a dials to reach b and b dials to reach a (the other's own port, or a proxy's); `extra`
/// goes into each node's `[pgmoneta]` section. Returns the nodes and their certificates'
/// directory, which must outlive them.
pub fn start_pair(
    source: &Cluster,
    ports: (u16, u16),
    dials: (u16, u16),
    extra: (&str, &str),
) -> (Daemon, Daemon, tempfile::TempDir) {
    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let ca = TestCa::new("pgmoneta cluster pair CA").unwrap();
    let lines = |name: &str, port: u16, peer: String, extra: &str| {
        format!("{}{extra}\n", node_lines(certs.path(), &ca, name, port, &peer))
    };
    let mut a = Daemon::new(source, &lines("a", ports.0, format!("b=127.0.0.1:{}", dials.0), extra.0));
    let mut b = Daemon::new(source, &lines("b", ports.1, format!("a=127.0.0.1:{}", dials.1), extra.1));
    share_keys(&a, &b);
    a.start();
    b.start();
    a.wait_for("one of a and b active for primary, the other following it", || {
        let roles = [cluster_role(&a), cluster_role(&b)];
        roles.contains(&"active".to_owned()) && roles.contains(&"follower".to_owned())
    });
    (a, b, certs)
}

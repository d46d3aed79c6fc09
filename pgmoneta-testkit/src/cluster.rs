//! The throwaway cluster.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgmoneta_core::PgVersion;

use crate::install::PgInstall;
use crate::port::{self, PortLock};
use crate::process::{self, RunAs};
use crate::tls::{IssuedCert, TestCa};
use crate::{Result, TestkitError};

/// Name of the superuser every cluster has.
pub const SUPERUSER: &str = "postgres";
/// Default name of the replication role.
pub const REPLICATION_USER: &str = "repl";

const FIELD_SEP: char = '\u{1f}';
const RECORD_SEP: char = '\u{1e}';

/// Settings for a new cluster. Start it with [`ClusterBuilder::start`].
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    install: Option<PgInstall>,
    superuser_password: String,
    replication_user: String,
    replication_password: String,
    wal_segment_size_mb: Option<u32>,
    data_checksums: bool,
    settings: Vec<(String, String)>,
    hba_lines: Vec<String>,
    tls: Option<IssuedCert>,
    tls_ca_pem: Option<Vec<u8>>,
}

impl Default for ClusterBuilder {
    fn default() -> ClusterBuilder {
        ClusterBuilder {
            install: None,
            superuser_password: "superuser-secret".to_owned(),
            replication_user: REPLICATION_USER.to_owned(),
            replication_password: "repl-secret".to_owned(),
            wal_segment_size_mb: None,
            data_checksums: true,
            settings: Vec::new(),
            hba_lines: Vec::new(),
            tls: None,
            tls_ca_pem: None,
        }
    }
}

impl ClusterBuilder {
    /// Uses `install` instead of [`PgInstall::discover`].
    pub fn install(mut self, install: PgInstall) -> Self {
        self.install = Some(install);
        self
    }

    /// The superuser's password (for TCP connections; the Unix socket trusts the superuser).
    pub fn superuser_password(mut self, password: &str) -> Self {
        self.superuser_password = password.to_owned();
        self
    }

    /// Name and password of the replication role.
    pub fn replication_user(mut self, name: &str, password: &str) -> Self {
        self.replication_user = name.to_owned();
        self.replication_password = password.to_owned();
        self
    }

    /// WAL segment size in MB (`initdb --wal-segsize`), a power of two from 1 to 1024.
    pub fn wal_segment_size_mb(mut self, mb: u32) -> Self {
        self.wal_segment_size_mb = Some(mb);
        self
    }

    /// Whether `initdb` enables data checksums (on by default).
    pub fn data_checksums(mut self, on: bool) -> Self {
        self.data_checksums = on;
        self
    }

    /// Adds a `postgresql.conf` setting; later settings win over the harness's own.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a `pg_hba.conf` line, placed before the harness's own lines.
    pub fn hba_line(mut self, line: &str) -> Self {
        self.hba_lines.push(line.to_owned());
        self
    }

    /// Turns TLS on with a server certificate for `localhost` and `127.0.0.1` signed by `ca`.
    /// [`Cluster::ca_file`] then holds `ca`'s certificate for clients to verify with, and the
    /// server accepts client certificates signed by `ca`.
    ///
    /// # Errors
    /// When the certificate cannot be made.
    pub fn tls(self, ca: &TestCa) -> Result<Self> {
        let cert = ca.issue_server(&["localhost"], &["127.0.0.1".parse().expect("an IP address")])?;
        Ok(self.tls_cert(cert, ca))
    }

    /// Turns TLS on with a given server certificate, signed by `ca`.
    pub fn tls_cert(mut self, cert: IssuedCert, ca: &TestCa) -> Self {
        self.tls = Some(cert);
        self.tls_ca_pem = Some(ca.cert_pem());
        self
    }

    /// Runs `initdb`, configures and starts the cluster, and creates the replication role.
    ///
    /// # Errors
    /// Any failing step, with the program's output and the end of the server log.
    pub fn start(self) -> Result<Cluster> {
        let install = match self.install.clone() {
            Some(i) => i,
            None => PgInstall::discover()?,
        };
        let run_as = RunAs::detect()?;
        cleanup_stale()?;
        let (root, root_path, socket_dir) = make_root()?;
        let data_dir = root_path.join("data");
        let pwfile = root_path.join("pwfile");
        write(&pwfile, &format!("{}\n", self.superuser_password))?;
        run_as.own(&root_path)?;

        let mut initdb = run_as.command(&install.server_program("initdb"), &root_path);
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        if self.data_checksums {
            initdb.arg("--data-checksums");
        }
        if let Some(mb) = self.wal_segment_size_mb {
            initdb.arg(format!("--wal-segsize={mb}"));
        }
        process::run(&mut initdb)?;
        let _ = fs::remove_file(&pwfile);

        let mut conf = String::from("\n# pgmoneta-testkit\n");
        let mut settings: Vec<(String, String)> = [
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("password_encryption", "'scram-sha-256'"),
            ("log_connections", "on"),
            ("log_line_prefix", "'%m [%p] %q%u@%d '"),
            ("fsync", "off"),
            ("shared_buffers", "32MB"),
            ("max_connections", "30"),
            ("wal_keep_size", "'256MB'"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if install.version() >= PgVersion::V17 {
            settings.push(("summarize_wal".to_owned(), "on".to_owned()));
        }
        if let (Some(cert), Some(ca)) = (&self.tls, &self.tls_ca_pem) {
            write(&data_dir.join("server.crt"), &String::from_utf8_lossy(&cert.cert_pem))?;
            write(&data_dir.join("server.key"), &String::from_utf8_lossy(&cert.key_pem))?;
            set_mode(&data_dir.join("server.key"), 0o600)?;
            write(&root_path.join("root.crt"), &String::from_utf8_lossy(ca))?;
            // The same CA checks client certificates (`cert` lines in pg_hba.conf).
            write(&data_dir.join("root.crt"), &String::from_utf8_lossy(ca))?;
            for file in ["server.crt", "server.key", "root.crt"] {
                run_as.own(&data_dir.join(file))?;
            }
            settings.push(("ssl".to_owned(), "on".to_owned()));
            settings.push(("ssl_ca_file".to_owned(), "'root.crt'".to_owned()));
        }
        settings.extend(self.settings.iter().cloned());
        for (k, v) in &settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&data_dir.join("postgresql.conf"), &conf)?;

        let mut hba = String::from("# pgmoneta-testkit\n");
        for line in &self.hba_lines {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str(&format!(
            "local   all          {SUPERUSER}                 trust\n\
             local   replication  {SUPERUSER}                 trust\n\
             local   all          all                         scram-sha-256\n\
             local   replication  all                         scram-sha-256\n\
             host    all          all          127.0.0.1/32   scram-sha-256\n\
             host    replication  all          127.0.0.1/32   scram-sha-256\n\
             host    all          all          ::1/128        scram-sha-256\n\
             host    replication  all          ::1/128        scram-sha-256\n"
        ));
        write(&data_dir.join("pg_hba.conf"), &hba)?;

        let mut cluster = Cluster {
            install,
            run_as,
            root: Some(root),
            root_path,
            data_dir,
            socket_dir,
            port: None,
            running: false,
            superuser_password: self.superuser_password,
            replication_user: self.replication_user,
            replication_password: self.replication_password,
        };
        cluster.start()?;
        let sql = format!(
            "CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD {}",
            quote_ident(&cluster.replication_user),
            quote_literal(&cluster.replication_password)
        );
        cluster.execute(&sql)?;
        cluster.execute(&format!("ALTER ROLE {SUPERUSER} PASSWORD {}", quote_literal(&cluster.superuser_password)))?;
        Ok(cluster)
    }
}

/// A running (or stopped) PostgreSQL cluster that belongs to one test.
#[derive(Debug)]
pub struct Cluster {
    install: PgInstall,
    run_as: RunAs,
    /// The directory holding the socket directory, the log and (for clusters made here) the data
    /// directory; removed on drop.
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: Option<PortLock>,
    running: bool,
    superuser_password: String,
    replication_user: String,
    replication_password: String,
}

impl Cluster {
    /// Settings for a new cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Starts a server on an existing data directory, such as a restored backup. The directory
    /// is handed to the cluster's user but not removed on drop; only the socket directory and log
    /// are. Its own `postgresql.conf` is used, with port, socket directory and listen address
    /// given on the command line. `superuser_password` is the password the restored cluster's
    /// superuser has, for TCP connections.
    ///
    /// # Errors
    /// When the server does not start; the error holds the end of its log.
    pub fn start_on(install: PgInstall, data_dir: &Path, superuser_password: &str) -> Result<Cluster> {
        let run_as = RunAs::detect()?;
        let (root, root_path, socket_dir) = make_root()?;
        set_mode(data_dir, 0o700)?;
        run_as.own(&root_path)?;
        run_as.own(data_dir)?;
        let mut cluster = Cluster {
            install,
            run_as,
            root: Some(root),
            root_path,
            data_dir: data_dir.to_owned(),
            socket_dir,
            port: None,
            running: false,
            superuser_password: superuser_password.to_owned(),
            replication_user: REPLICATION_USER.to_owned(),
            replication_password: String::new(),
        };
        cluster.start()?;
        Ok(cluster)
    }

    /// The installation this cluster runs.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// The server's major version.
    pub fn version(&self) -> PgVersion {
        self.install.version()
    }

    /// The TCP port (on 127.0.0.1). Stays the same across [`Cluster::restart`].
    pub fn port(&self) -> u16 {
        self.port.as_ref().map_or(0, PortLock::port)
    }

    /// The TCP host, `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The private Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The CA certificate that signed the server's, when the cluster was built with TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        let path = self.root_path.join("root.crt");
        path.exists().then_some(path)
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.root_path.join("server.log")
    }

    /// The server log as it is now.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Name of the replication role.
    pub fn replication_user(&self) -> &str {
        &self.replication_user
    }

    /// Password of the replication role.
    pub fn replication_password(&self) -> &str {
        &self.replication_password
    }

    /// Hands `path` (a directory for a tablespace, say) to the operating system user the
    /// server runs as.
    ///
    /// # Errors
    /// When the ownership cannot be changed.
    pub fn give_to_server(&self, path: &Path) -> Result<()> {
        self.run_as.own(path)
    }

    /// Password of the superuser.
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// A libpq connection string for TCP as `user` with `password`; `extra` is appended
    /// (`"replication=true"`, `"dbname=x"`).
    pub fn tcp_conninfo(&self, user: &str, password: &str, extra: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname=postgres sslmode=disable {extra}",
            self.host(),
            self.port(),
            conninfo_value(user),
            conninfo_value(password)
        )
    }

    /// Starts the server (after [`Cluster::stop`]); reserves a port on first start.
    ///
    /// # Errors
    /// When `pg_ctl start` fails; the error holds the end of the server log.
    pub fn start(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        let first_start = self.port.is_none();
        for attempt in 0..5 {
            if self.port.is_none() {
                let lock = port::reserve(&|dir| stop_leftover(dir))?;
                lock.record_cluster(&self.root_path);
                self.port = Some(lock);
            }
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.running = true;
                    return Ok(());
                }
                // Someone else bound the port after we reserved it: take another.
                Err(e) if first_start && e.is_retryable() && attempt < 4 => self.port = None,
                Err(e) => return Err(e),
            }
        }
        Err(TestkitError::NoPort)
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port(), self.socket_dir.display());
        let mut cmd = self.run_as.command(&self.install.server_program("pg_ctl"), &self.root_path);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "120", "-o", &opts, "start"]);
        process::run(&mut cmd).map(drop).map_err(|e| self.with_log(e))
    }

    /// Stops the server (fast shutdown) and waits for it.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop(&mut self) -> Result<()> {
        self.stop_with("fast")
    }

    /// Stops the server with `pg_ctl stop -m <mode>` (`smart`, `fast`, or `immediate`: a crash,
    /// recovered at the next start) and waits for it.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop_with(&mut self, mode: &str) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.run_as.command(&self.install.server_program("pg_ctl"), &self.root_path);
        cmd.arg("-D").arg(&self.data_dir).args(["-w", "-t", "120", "-m", mode, "stop"]);
        process::run(&mut cmd).map_err(|e| self.with_log(e))?;
        self.running = false;
        Ok(())
    }

    /// Stops and starts the server on the same port.
    ///
    /// # Errors
    /// When either step fails.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Runs SQL as the superuser in database `postgres` through `psql`, returning its rows.
    ///
    /// # Errors
    /// When `psql` reports an error (the message is PostgreSQL's).
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        self.query_in("postgres", sql)
    }

    /// Like [`Cluster::query`] in database `db`.
    ///
    /// # Errors
    /// When `psql` reports an error.
    pub fn query_in(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut cmd = self.psql_command(db);
        cmd.arg("-c").arg(sql);
        let out = process::run(&mut cmd)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(text
            .split(RECORD_SEP)
            .filter(|r| !r.is_empty())
            .map(|r| r.split(FIELD_SEP).map(str::to_owned).collect())
            .collect())
    }

    /// Runs SQL and returns the first column of the first row (empty when there is no row).
    ///
    /// # Errors
    /// When `psql` reports an error.
    pub fn query_scalar(&self, sql: &str) -> Result<String> {
        let rows = self.query(sql)?;
        Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or_default())
    }

    /// Runs SQL statements, discarding results.
    ///
    /// # Errors
    /// When `psql` reports an error.
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.query(sql).map(drop)
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut cmd = self.run_as.command(&self.install.client_program("psql"), &self.root_path);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--field-separator={FIELD_SEP}"))
            .arg(format!("--record-separator={RECORD_SEP}"))
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port().to_string(), "-U", SUPERUSER, "-d", db]);
        cmd
    }

    /// Runs `psql` with a connection string (for instance from [`Cluster::tcp_conninfo`]) and
    /// returns its standard output. `psql` can run replication commands on a `replication=true`
    /// connection.
    ///
    /// # Errors
    /// When `psql` fails to connect or the command fails; the error holds PostgreSQL's message.
    pub fn psql_with(&self, conninfo: &str, sql: &str) -> Result<String> {
        let mut cmd = self.run_as.command(&self.install.client_program("psql"), &self.root_path);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql]);
        let out = process::run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Loads the pgbench tables at `scale` (`pgbench -i -s scale`; scale 1 is 100,000 accounts,
    /// about 15 MB).
    ///
    /// # Errors
    /// When pgbench fails.
    pub fn pgbench_init(&self, scale: u32) -> Result<()> {
        let mut cmd = self.pgbench_command();
        cmd.args(["-i", "-q", "-s", &scale.to_string(), "postgres"]);
        process::run(&mut cmd).map(drop)
    }

    /// Runs pgbench's default workload: `clients` connections, `transactions` each.
    ///
    /// # Errors
    /// When pgbench fails.
    pub fn pgbench_run(&self, clients: u32, transactions: u32) -> Result<()> {
        let mut cmd = self.pgbench_command();
        cmd.args(["-n", "-c", &clients.to_string(), "-t", &transactions.to_string(), "postgres"]);
        process::run(&mut cmd).map(drop)
    }

    /// Runs pgbench for `seconds` with `clients` connections and the extra `args` (`-N` for
    /// the simple-update workload, for instance).
    ///
    /// # Errors
    /// When pgbench fails.
    pub fn pgbench_for(&self, clients: u32, seconds: u32, args: &[&str]) -> Result<()> {
        let mut cmd = self.pgbench_command();
        cmd.args(["-n", "-c", &clients.to_string(), "-T", &seconds.to_string()]).args(args).arg("postgres");
        process::run(&mut cmd).map(drop)
    }

    fn pgbench_command(&self) -> Command {
        let mut cmd = self.run_as.command(&self.install.client_program("pgbench"), &self.root_path);
        cmd.arg("-h").arg(&self.socket_dir).args(["-p", &self.port().to_string(), "-U", SUPERUSER]);
        cmd
    }

    /// Forces a switch to a new WAL segment; returns the name of the segment it finished.
    ///
    /// # Errors
    /// When the SQL fails.
    pub fn switch_wal(&self) -> Result<String> {
        self.query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
    }

    fn with_log(&self, err: TestkitError) -> TestkitError {
        match err {
            TestkitError::Command { command, status, output } => {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                TestkitError::Command {
                    command,
                    status,
                    output: format!("{output}\n--- server log ---\n{}", tail.join("\n")),
                }
            }
            other => other,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            // Immediate: the test is over, nothing needs to be kept consistent.
            let mut cmd = self.run_as.command(&self.install.server_program("pg_ctl"), &self.root_path);
            cmd.arg("-D").arg(&self.data_dir).args(["-w", "-t", "60", "-m", "immediate", "stop"]);
            if let Err(e) = process::run(&mut cmd) {
                eprintln!("pgmoneta-testkit: could not stop the cluster in {}: {e}", self.data_dir.display());
            }
        }
        if let Some(root) = self.root.take() {
            let path = root.path().to_owned();
            if let Err(e) = root.close() {
                eprintln!("pgmoneta-testkit: could not remove {}: {e}", path.display());
            }
        }
        // The port lock goes last, when nothing can use the port any more.
        self.port.take();
    }
}

/// Stops and removes the clusters of test processes that died without cleaning up (killed, or
/// aborted). Runs before every new cluster; tests may call it too.
///
/// # Errors
/// When the lock directory cannot be read.
pub fn cleanup_stale() -> Result<()> {
    port::sweep_stale(&stop_leftover)
}

/// Stops a cluster left running by a test process that died (its port lock was stale).
fn stop_leftover(root: &Path) {
    let data = root.join("data");
    let pid_file = data.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else {
        let _ = fs::remove_dir_all(root);
        return;
    };
    if let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
        for _ in 0..100 {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let _ = fs::remove_dir_all(root);
}

/// A fresh private directory for one cluster, with its socket directory inside, both mode 0700.
fn make_root() -> Result<(tempfile::TempDir, PathBuf, PathBuf)> {
    let root = tempfile::Builder::new().prefix("pgmoneta-testkit-").tempdir().map_err(|source| TestkitError::Io {
        what: "cannot create",
        path: std::env::temp_dir(),
        source,
    })?;
    let root_path = root.path().to_owned();
    let socket_dir = root_path.join("socket");
    fs::create_dir(&socket_dir).map_err(|source| TestkitError::Io {
        what: "cannot create",
        path: socket_dir.clone(),
        source,
    })?;
    set_mode(&root_path, 0o700)?;
    set_mode(&socket_dir, 0o700)?;
    Ok((root, root_path, socket_dir))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| TestkitError::Io {
        what: "cannot set permissions of",
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|source| TestkitError::Io { what: "cannot write", path: path.to_owned(), source })
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| TestkitError::Io { what: "cannot append to", path: path.to_owned(), source })
}

/// `'value'` with quotes and backslashes escaped, for a libpq connection string.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An SQL string literal.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// An SQL identifier.
pub(crate) fn quote_ident(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

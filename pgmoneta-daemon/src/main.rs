//! `pgmoneta`: the backup daemon.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use pgmoneta_core::config::{Config, LogType};
use pgmoneta_crypto::{MasterKeyFile, VaultKind};
use pgmoneta_daemon::state::{Paths, Shared};
use pgmoneta_daemon::{logging, metrics, mgmt, pg, pidfile, read_vault, timers, walservice};

const DEFAULT_DIR: &str = "/etc/pgmoneta";

/// pgmoneta: backup and restore for PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "pgmoneta", version, disable_help_flag = true, disable_version_flag = true)]
struct Args {
    /// The main configuration file (default /etc/pgmoneta/pgmoneta.conf).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// The users vault (default /etc/pgmoneta/pgmoneta_users.conf).
    #[arg(short = 'u', long = "users")]
    users: Option<PathBuf>,
    /// The admins vault (default /etc/pgmoneta/pgmoneta_admins.conf, optional).
    #[arg(short = 'A', long = "admins")]
    admins: Option<PathBuf>,
    /// A directory holding the configuration files (or PGMONETA_CONFIG_DIR).
    #[arg(short = 'D', long = "directory")]
    directory: Option<PathBuf>,
    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Print the version and exit.
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Print this help.
    #[arg(short = '?', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// `--man-page` as the only argument prints the manual page (for packagers), from the same
/// definition as `--help`.
fn print_man_page_if_asked(command: clap::Command) {
    if std::env::args().skip(1).collect::<Vec<_>>() != ["--man-page"] {
        return;
    }
    let mut page = Vec::new();
    let written = clap_mangen::Man::new(command).render(&mut page).and_then(|()| {
        use std::io::Write;
        std::io::stdout().write_all(&page)
    });
    std::process::exit(if written.is_ok() { 0 } else { 1 });
}

/// A configuration file: the flag, else the directory's (-D, then PGMONETA_CONFIG_DIR) if it
/// exists there, else /etc/pgmoneta's.
fn resolve(flag: Option<PathBuf>, dir: Option<&Path>, name: &str) -> PathBuf {
    if let Some(f) = flag {
        return f;
    }
    if let Some(d) = dir {
        let p = d.join(name);
        if p.exists() {
            return p;
        }
    }
    Path::new(DEFAULT_DIR).join(name)
}

fn main() {
    print_man_page_if_asked(<Args as clap::CommandFactory>::command());
    let args = Args::parse();
    if args.version {
        println!("pgmoneta {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(1);
    }
    std::process::exit(match run(args) {
        Ok(()) => 0,
        Err(problems) => {
            for p in &problems {
                logging::fatal(p);
            }
            1
        }
    });
}

fn run(args: Args) -> Result<(), Vec<String>> {
    if nix::unistd::geteuid().is_root() && std::env::var("PGMONETA_ALLOW_ROOT").as_deref() != Ok("1") {
        return Err(vec![
            "pgmoneta refuses to run as root; run it as the pgmoneta user (containers and tests may set PGMONETA_ALLOW_ROOT=1)".into(),
        ]);
    }
    let dir = args.directory.clone().or_else(|| std::env::var_os("PGMONETA_CONFIG_DIR").map(PathBuf::from));
    let config_path = resolve(args.config, dir.as_deref(), "pgmoneta.conf");
    let users_path = resolve(args.users, dir.as_deref(), "pgmoneta_users.conf");
    let admins_path = resolve(args.admins, dir.as_deref(), "pgmoneta_admins.conf");

    // Everything is checked, and every problem reported, before anything is touched.
    let mut problems = Vec::new();
    let config = match Config::load(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|p| p.check().map_err(|e| e.to_string()))
    {
        Ok((c, warnings)) => {
            for w in warnings {
                eprintln!("pgmoneta: {w}");
            }
            Some(c)
        }
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let key_file = MasterKeyFile::default_location().map_err(|e| e.to_string());
    let master_key = match key_file.and_then(|f| {
        if f.path().exists() {
            f.load().map(Some).map_err(|e| e.to_string())
        } else {
            Ok(None)
        }
    }) {
        Ok(k) => k.map(Arc::new),
        Err(e) => {
            problems.push(format!("master key: {e}"));
            None
        }
    };
    let users = match read_vault(&users_path, VaultKind::Users, master_key.as_deref()) {
        Ok(u) if u.is_empty() => {
            problems.push(format!(
                "{}: the users vault has no users (add them with pgmoneta-admin -f {} user add)",
                users_path.display(),
                users_path.display()
            ));
            u
        }
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("users vault: {e}"));
            HashMap::new()
        }
    };
    let admins_used = admins_path.exists();
    let admins = if admins_used {
        read_vault(&admins_path, VaultKind::Admins, master_key.as_deref()).unwrap_or_else(|e| {
            problems.push(format!("admins vault: {e}"));
            HashMap::new()
        })
    } else {
        HashMap::new()
    };
    let Some(config) = config else { return Err(problems) };
    let m = &config.main;
    for s in &config.servers {
        if let Some(u) = &s.user {
            if !users.is_empty() && !users.contains_key(u) {
                problems.push(format!("[{}] user {u:?} is not in the users vault {}", s.name, users_path.display()));
            }
        }
    }
    let socket_dir = PathBuf::from(m.unix_socket_dir.clone().unwrap_or_default());
    if !socket_dir.is_dir() {
        problems.push(format!("unix_socket_dir {} does not exist", socket_dir.display()));
    }
    if m.encryption.code() != 0 && master_key.is_none() {
        problems.push("encryption is on but there is no master key (pgmoneta-admin master-key)".into());
    }
    if args.daemon && m.log_type == LogType::Console {
        problems.push("-d needs log_type = file or syslog: a daemon has no console".into());
    }
    if m.management > 0 && admins.is_empty() {
        eprintln!("pgmoneta: warning: management = {} but no admins: remote management refuses everyone", m.management);
    }
    if m.cluster > 0 && m.cluster_user.as_ref().is_some_and(|u| !admins.contains_key(u)) {
        problems.push(format!(
            "cluster_user {:?} is not in the admins vault: peers could not authenticate",
            m.cluster_user.as_deref().unwrap_or_default()
        ));
    }
    // One acceptor serves remote management (with tls = on) and the cluster port (always TLS).
    let (management_tls, cluster_on) = (m.management > 0 && m.tls, m.cluster > 0);
    let acceptor = if management_tls || cluster_on {
        match mgmt::tls_acceptor(
            m.tls_cert_file.as_deref().unwrap_or(""),
            m.tls_key_file.as_deref().unwrap_or(""),
            m.tls_ca_file.as_deref(),
        ) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        }
    } else {
        None
    };
    let tls = acceptor.clone().filter(|_| management_tls);
    let cluster_tls = acceptor.filter(|_| cluster_on);
    if !problems.is_empty() {
        return Err(problems);
    }
    let host = m.host.clone().unwrap_or_else(|| "*".into());
    let pidfile_path = m.pidfile.clone().map(PathBuf::from).unwrap_or_else(|| {
        socket_dir.join(format!("pgmoneta.{}.pid", if host == "*" { "all" } else { host.as_str() }))
    });
    let base_dir = PathBuf::from(m.base_dir.clone().unwrap_or_default());

    // The lock is taken before going to the background, so that a refusal reaches the
    // terminal; the background process inherits it and writes its own pid.
    let mut pid = pidfile::PidFile::create(&pidfile_path).map_err(|e| vec![e.to_string()])?;
    if args.daemon {
        nix::unistd::daemon(true, false).map_err(|e| vec![format!("daemonizing: {e}")])?;
        pid.write_own_pid().map_err(|e| vec![e.to_string()])?;
    }
    let counters = logging::install(m);
    pid.report();
    pgmoneta_storage::fsio::create_dir_all(&base_dir)
        .map_err(|e| vec![format!("base_dir {}: {e}", base_dir.display())])?;

    // Signals are taken by one thread with sigwait; every other thread inherits the mask.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGALRM] {
        signals.add(s);
    }
    signals.thread_block().map_err(|e| vec![format!("blocking signals: {e}")])?;

    let paths = Paths {
        config: config_path,
        users: users_path,
        admins: admins_used.then_some(admins_path),
        pidfile: pid.path().to_owned(),
        socket: socket_dir.join(".s.pgmoneta"),
    };
    let management = m.management;
    let metrics_port = m.metrics;
    let nagios_port = m.nagios;
    let console_port = m.console;
    let metrics_tls = match (&m.metrics_cert_file, &m.metrics_key_file) {
        (Some(c), Some(k)) => match mgmt::tls_acceptor(c, k, m.metrics_ca_file.as_deref()) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => {
                log::error!("metrics over HTTPS: {e}; serving HTTP");
                None
            }
        },
        _ => None,
    };
    let shared = Arc::new(Shared::new(config.clone(), paths.clone(), master_key, users, admins, counters));
    log::info!("pgmoneta {} starting (pid {})", env!("CARGO_PKG_VERSION"), std::process::id());

    for s in &config.servers {
        match pgmoneta_storage::ops::cleanup_incomplete(shared.store(), &s.name) {
            Ok(removed) => {
                for l in removed {
                    log::warn!("server [{}]: removed the incomplete backup {l} left by an interrupted run", s.name);
                }
            }
            Err(pgmoneta_storage::StorageError::NotFound(_)) => {}
            Err(e) => log::debug!("server [{}]: looking for incomplete backups: {e}", s.name),
        }
    }
    std::thread::scope(|scope| {
        for s in &config.servers {
            let shared = &shared;
            scope.spawn(move || {
                if let Some(state) = shared.server(&s.name) {
                    pg::recheck(shared, state, s, true);
                }
            });
        }
    });

    let _ = std::fs::remove_file(&paths.socket);
    let listener = UnixListener::bind(&paths.socket).map_err(|e| vec![format!("{}: {e}", paths.socket.display())])?;
    let _ = std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o700));
    let mut threads = vec![mgmt::serve_unix(shared.clone(), listener)];
    let bind = |port: u16| {
        let addr = if host == "*" { format!("0.0.0.0:{port}") } else { format!("{host}:{port}") };
        std::net::TcpListener::bind(&addr).map_err(|e| format!("{addr}: {e}"))
    };
    if management > 0 {
        match bind(management) {
            Ok(l) => threads.push(mgmt::serve_remote(shared.clone(), l, tls)),
            Err(e) => log::error!("remote management: {e}"),
        }
    }
    let mut endpoints = Vec::new();
    if metrics_port > 0 {
        match bind(metrics_port) {
            Ok(l) => endpoints.push(metrics::endpoint(shared.clone(), l, metrics_tls.clone())),
            Err(e) => log::error!("metrics: {e}"),
        }
    }
    if console_port > 0 {
        match bind(console_port) {
            Ok(l) => {
                let history = Arc::new(pgmoneta_daemon::console::history::History::default());
                threads.push(pgmoneta_daemon::console::history::spawn(shared.clone(), history.clone()));
                let console = Arc::new(pgmoneta_daemon::console::Console::new(shared.clone(), history));
                if metrics_tls.is_none() && shared.config().main.console_actions {
                    log::warn!(
                        "console: served over plain HTTP, so admins' passwords and sessions cross the network in \
                         clear; set metrics_cert_file and metrics_key_file for HTTPS, or console_actions = off"
                    );
                }
                endpoints.push(pgmoneta_daemon::console::endpoint(console, l, metrics_tls.clone()));
            }
            Err(e) => log::error!("console: {e}"),
        }
    }
    if nagios_port > 0 {
        match bind(nagios_port) {
            Ok(l) => endpoints.push(pgmoneta_daemon::nagios::endpoint(shared.clone(), l, metrics_tls.clone())),
            Err(e) => log::error!("nagios: {e}"),
        }
    }
    if !endpoints.is_empty() {
        let stopping = shared.clone();
        match pgmoneta_daemon::http::spawn(endpoints, pgmoneta_daemon::http::Limits::default(), move || {
            stopping.stopping()
        }) {
            Ok(t) => threads.push(t),
            Err(e) => log::error!("HTTP endpoints: {e}"),
        }
    }
    if let (Some(cluster), Some(tls)) = (shared.cluster.clone(), cluster_tls) {
        let port = shared.config().main.cluster;
        match bind(port) {
            Ok(l) => {
                threads.push(pgmoneta_daemon::cluster::link::serve(shared.clone(), cluster.clone(), l, tls));
                threads.extend(pgmoneta_daemon::cluster::link::spawn_peers(shared.clone(), cluster));
            }
            Err(e) => log::error!("cluster: {e}"),
        }
    }
    let receivers = walservice::spawn_all(&shared);
    threads.push(timers::spawn(shared.clone()));
    threads.extend(pgmoneta_daemon::remote::spawn_wal_shipper(shared.clone()));
    log::info!("pgmoneta ready: {}", paths.socket.display());
    let notifier = pgmoneta_daemon::sdnotify::Notifier::from_env();
    let status = |shared: &Shared| {
        let n = shared.config().servers.len();
        format!("{n} server{}, management socket {}", if n == 1 { "" } else { "s" }, paths.socket.display())
    };
    notifier.ready(&status(&shared));
    if let Some(interval) = pgmoneta_daemon::sdnotify::watchdog_interval().filter(|_| notifier.active()) {
        log::info!("systemd watchdog every {:.1} s", interval.as_secs_f64() / 2.0);
        let stopping = shared.clone();
        threads.push(pgmoneta_daemon::sdnotify::spawn_watchdog(
            notifier.clone(),
            interval,
            paths.socket.clone(),
            move || stopping.stopping() || stopping.shutdown.load(Ordering::SeqCst),
        ));
    }

    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => {
                notifier.reloading();
                if let Err(e) = pgmoneta_daemon::reload(&shared) {
                    log::error!("reload failed, the configuration in force is unchanged: {e}");
                }
                notifier.reloaded(&status(&shared));
            }
            Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGALRM) => break,
            Ok(_) => {}
            Err(e) => {
                log::error!("waiting for signals: {e}");
                break;
            }
        }
        if shared.stopping() {
            break;
        }
    }
    log::info!("pgmoneta stopping");
    notifier.stopping();
    shared.shutdown.store(true, Ordering::SeqCst);
    for s in &shared.servers {
        if let Some(c) = s.backup_cancel.lock().as_ref() {
            log::warn!("server [{}]: abandoning the running backup", s.name);
            c.store(true, Ordering::SeqCst);
        }
        walservice::stop_stream(s);
    }
    for r in receivers {
        let _ = r.join();
    }
    // Give abandoned operations a moment to remove what they wrote.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until && shared.servers.iter().any(|s| s.activity().is_some()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in threads {
        let _ = t.join();
    }
    let _ = std::fs::remove_file(&paths.socket);
    drop(pid);
    log::info!("pgmoneta stopped");
    log::logger().flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_flag_wins_over_the_directory_which_falls_back_to_etc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pgmoneta.conf"), "").unwrap();
        let own = PathBuf::from("/srv/own.conf");
        assert_eq!(resolve(Some(own.clone()), Some(dir.path()), "pgmoneta.conf"), own);
        assert_eq!(resolve(None, Some(dir.path()), "pgmoneta.conf"), dir.path().join("pgmoneta.conf"));
        assert_eq!(
            resolve(None, Some(dir.path()), "pgmoneta_users.conf"),
            Path::new(DEFAULT_DIR).join("pgmoneta_users.conf")
        );
        assert_eq!(resolve(None, None, "pgmoneta.conf"), Path::new(DEFAULT_DIR).join("pgmoneta.conf"));
    }
}

//! Start-up: every configuration problem reported at once, nothing touched; a server that
//! fails its checks stays offline while the others run.

use std::process::Command;

use crate::{cluster, Daemon};

#[test]
fn configuration_problems_are_all_reported_and_nothing_is_touched() {
    let source = cluster();
    let d = Daemon::new(&source, "retention = 0\nworkers = many\n");
    std::fs::remove_file(d.dir.path().join("pgmoneta_users.conf")).unwrap();
    let out = d.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("retention"), "{err}");
    assert!(err.contains("workers"), "{err}");
    assert!(err.contains("pgmoneta_users.conf"), "{err}");
    assert!(!d.base.exists(), "base_dir was created although the configuration is broken");
    assert!(!d.socket().exists());
    assert!(!d.pidfile().exists());

    // As root without the explicit permission: refused.
    if nix::unistd::geteuid().is_root() {
        let out =
            Command::new(env!("CARGO_BIN_EXE_pgmoneta")).arg("-c").arg(&d.conf).env("HOME", &d.home).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("PGMONETA_ALLOW_ROOT"));
    }
    // -V prints the version and exits non-zero, as upstream's does.
    let out = Command::new(env!("CARGO_BIN_EXE_pgmoneta")).arg("-V").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pgmoneta "));
}

#[test]
fn a_server_failing_its_checks_is_offline_and_says_why() {
    let source = cluster();
    let mut d = Daemon::new(&source, "");
    let extra = format!(
        "\n[broken]\nhost = 127.0.0.1\nport = {}\nuser = {}\nwal_slot = missing\ncreate_slot = no\n",
        source.port(),
        source.replication_user()
    );
    let mut text = std::fs::read_to_string(&d.conf).unwrap();
    text.push_str(&extra);
    std::fs::write(&d.conf, text).unwrap();
    d.start();
    d.wait_streaming();
    let status = d.ok(&["status"]);
    let broken = status["Servers"].as_array().unwrap().iter().find(|s| s["Server"] == "broken").unwrap().clone();
    assert_eq!(broken["Online"], false);
    assert_eq!(broken["WalStreaming"], false);
    let problems = broken["Problems"].to_string();
    assert!(problems.contains("replication slot") && problems.contains("missing"), "{problems}");
    assert!(d.log_text().contains("server [broken]: offline"), "{}", d.log_text());
    d.fails(&["backup", "broken"], 100);
    // The other server is unaffected.
    assert_eq!(d.ok(&["backup", "primary"])["Valid"], 1);
}

#[test]
fn daemonizes_with_dash_d() {
    let source = cluster();
    let d = Daemon::new(&source, "");
    let out = d.command().arg("-d").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // The foreground process has returned; the daemon answers from the background.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.cli(&["ping"]).0 != 0 {
        assert!(std::time::Instant::now() < until, "the daemonized pgmoneta does not answer:\n{}", d.log_text());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid: i32 = std::fs::read_to_string(d.pidfile()).unwrap().trim().parse().unwrap();
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
    d.ok(&["shutdown"]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Gone, or a zombie waiting for a parent (the container's init) that may never reap it.
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    };
    while running(pid) {
        assert!(std::time::Instant::now() < until, "the daemon did not stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!d.pidfile().exists());
}

#[test]
fn the_pidfile_lock_decides_who_runs() {
    let source = cluster();
    let mut d = Daemon::new(&source, "");
    // A pidfile naming a live process that is not a pgmoneta daemon (a reused pid): no
    // obstacle.
    std::fs::write(d.pidfile(), format!("{}\n", std::process::id())).unwrap();
    d.start();
    assert!(d.log_text().contains("stale pidfile"), "{}", d.log_text());
    // A second daemon on the same configuration is refused, naming the first, and leaves the
    // first's pidfile alone.
    let out = d.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("already running") && err.contains(&d.pid().to_string()), "{err}");
    assert_eq!(std::fs::read_to_string(d.pidfile()).unwrap().trim(), d.pid().to_string());
    d.ok(&["ping"]);
    // Killed and restarted at once, before anyone reaped the dead process: it starts.
    let mut dead = d.kill9_unreaped();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let zombie = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
    };
    while !zombie(dead.id()) {
        assert!(std::time::Instant::now() < until, "the killed daemon did not die");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    d.start();
    assert!(zombie(dead.id()), "the old daemon was reaped before the restart: the test proves nothing");
    dead.wait().unwrap();
    d.wait_streaming();
    assert_eq!(d.ok(&["backup", "primary"])["Valid"], 1);
}

/// Run by systemd as a `Type=notify` service: `READY=1` with its pid once it serves, watchdog
/// pings while its management socket answers, `RELOADING=1` then `READY=1` around a reload,
/// `STOPPING=1` when it stops.
#[test]
fn tells_systemd_how_it_is_doing() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    let source = cluster();
    let mut d = Daemon::new(&source, "");
    let path = d.dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    d.env.push(("NOTIFY_SOCKET".into(), path.to_str().unwrap().into()));
    d.env.push(("WATCHDOG_USEC".into(), "1000000".into()));
    d.start();
    let next = || {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    // Skips watchdog pings, counting them.
    let mut pings = 0;
    let mut next_state = || loop {
        let m = next();
        if m == "WATCHDOG=1" {
            pings += 1;
        } else {
            return m;
        }
    };
    let ready = next_state();
    assert!(ready.starts_with("READY=1\nSTATUS=1 server, management socket "), "{ready}");
    assert!(ready.ends_with(&format!("MAINPID={}", d.pid())), "{ready}");
    let started = Instant::now();
    assert_eq!(next(), "WATCHDOG=1");
    assert!(started.elapsed() < Duration::from_secs(3), "the watchdog is fed at half its interval");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reloading = next_state();
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    assert!(next_state().starts_with("READY=1\nSTATUS="));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(next_state(), "STOPPING=1\nSTATUS=stopping");
    assert_eq!(d.wait_exit(Duration::from_secs(60)), 0);
    assert!(d.log_text().contains("systemd watchdog every 0.5 s"), "{}", d.log_text());
}

//! Telling systemd how the daemon is doing, when it runs as a `Type=notify` service: `READY=1`
//! once every listener is up, `RELOADING=1` and `READY=1` around a reload, `STOPPING=1` when it
//! begins to stop, a `STATUS=` line for `systemctl status`, and, when the unit sets
//! `WatchdogSec=`, a `WATCHDOG=1` at half that interval while the management socket answers a
//! ping. Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.
//!
//! The protocol is one datagram per message on the Unix socket named by `NOTIFY_SOCKET` (a path,
//! or an abstract name written with a leading `@`), holding `KEY=value` lines.

use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgmoneta_wire::management::{payload, read_frame, write_frame, Command, Document, OutputFormat};

/// Where systemd listens, from `NOTIFY_SOCKET`; `None` outside a notify service.
#[derive(Clone, Debug)]
pub struct Notifier {
    socket: Option<String>,
}

impl Notifier {
    /// From the environment. The variable is left in place: the daemon starts no service of
    /// its own that could mistake itself for the unit's main process.
    pub fn from_env() -> Notifier {
        Notifier::at(std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty()))
    }

    /// Notifications to `socket` (a path, or `@name` for an abstract socket); `None`: none.
    pub fn at(socket: Option<String>) -> Notifier {
        Notifier { socket }
    }

    /// Whether systemd is listening.
    pub fn active(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `lines` (`KEY=value` separated by newlines). A failure is logged, never fatal:
    /// the service goes on whether or not systemd heard.
    pub fn send(&self, lines: &str) {
        let Some(socket) = &self.socket else { return };
        if let Err(e) = send_to(socket, lines) {
            log::warn!("systemd notification {:?} to {socket}: {e}", lines.lines().next().unwrap_or_default());
        }
    }

    /// Every listener is up: the service has started.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id()));
    }

    /// Before a reload; [`Notifier::reloaded`] after it.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// The reload is over (applied or refused).
    pub fn reloaded(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// The daemon has begun to stop.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

fn send_to(socket: &str, lines: &str) -> std::io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            datagram.send_to_addr(lines.as_bytes(), &addr)?;
        }
        None => {
            datagram.send_to(lines.as_bytes(), socket)?;
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, as `RELOADING=1` wants beside it.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000)
        .unwrap_or(0)
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`, for this process when
/// `WATCHDOG_PID` names one); `None` when the unit sets no `WatchdogSec=`.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Whether the management socket at `socket` answers a ping within `timeout`.
pub fn management_answers(socket: &Path, timeout: Duration) -> bool {
    let attempt = || -> Result<bool, Box<dyn std::error::Error>> {
        let mut s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let doc = Document::request(Command::Ping, serde_json::Map::new(), OutputFormat::Text, "");
        write_frame(&mut s, &payload::encode(&doc.to_json(), 0, 0, None)?)?;
        let reply = Document::from_json(&payload::decode(&read_frame(&mut s)?, None)?)?;
        Ok(reply.outcome.is_some_and(|o| o.status))
    };
    attempt().unwrap_or(false)
}

/// Pings systemd's watchdog every half `interval` for as long as the management socket
/// answers and the daemon is not stopping: a daemon whose management loop hangs stops feeding
/// it, and systemd restarts it.
pub fn spawn_watchdog(
    notifier: Notifier,
    interval: Duration,
    socket: PathBuf,
    stopping: impl Fn() -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let step = interval / 2;
            let mut next = Instant::now();
            let mut failing = false;
            while !stopping() {
                if Instant::now() >= next {
                    next = Instant::now() + step;
                    if management_answers(&socket, step.min(Duration::from_secs(10))) {
                        if failing {
                            log::info!("watchdog: the management socket answers again");
                            failing = false;
                        }
                        notifier.send("WATCHDOG=1");
                    } else if !failing {
                        log::error!(
                            "watchdog: the management socket {} does not answer; systemd is not told that all is well",
                            socket.display()
                        );
                        failing = true;
                    }
                }
                std::thread::sleep(Duration::from_millis(200).min(step));
            }
        })
        .expect("spawning the watchdog thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (dir, sock, path.to_str().unwrap().to_owned())
    }

    fn receive(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let (_dir, sock, path) = listener();
        let n = Notifier::at(Some(path));
        n.ready("serving 2 servers");
        let got = receive(&sock);
        assert!(got.starts_with("READY=1\nSTATUS=serving 2 servers\nMAINPID="), "{got}");
        n.reloading();
        let got = receive(&sock);
        assert!(got.starts_with("RELOADING=1\nMONOTONIC_USEC=") && !got.ends_with("=0"), "{got}");
        n.stopping();
        assert_eq!(receive(&sock), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pgmoneta-notify-test-{}", std::process::id());
        let sock = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Notifier::at(Some(format!("@{name}"))).send("WATCHDOG=1");
        assert_eq!(receive(&sock), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let n = Notifier::at(None);
        assert!(!n.active());
        n.ready("x");
        n.stopping();
        // A socket that is gone is logged, not fatal.
        Notifier::at(Some("/nonexistent/notify".into())).ready("x");
    }

    #[test]
    fn a_silent_management_socket_does_not_feed_the_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.pgmoneta");
        // Accepts but never answers.
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(!management_answers(&path, Duration::from_millis(300)));
        assert!(!management_answers(&dir.path().join("missing"), Duration::from_millis(300)));
    }
}

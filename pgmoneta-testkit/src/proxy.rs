//! A loopback TCP proxy that a test can cut: every connection through it is forwarded to a
//! target port until [`CutProxy::cut`] shuts them all down at once, as a broken network would
//! (new connections are still accepted afterwards, unless [`CutProxy::refuse`] says otherwise).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running proxy on `127.0.0.1:<port>`; stopped when dropped.
#[derive(Debug)]
pub struct CutProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    refuse: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl CutProxy {
    /// Forwards a new port on 127.0.0.1 to `127.0.0.1:<target>`.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start(target: u16) -> CutProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding the proxy");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if s.refuse.load(Ordering::SeqCst) {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                        {
                            let mut open = s.open.lock().expect("not poisoned");
                            open.push(client.try_clone().expect("clone"));
                            open.push(server.try_clone().expect("clone"));
                        }
                        std::thread::spawn(move || pump(client, server));
                        std::thread::spawn(move || pump(s2, c2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        CutProxy { port, shared, acceptor: Some(acceptor) }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Cuts every open connection, both ways.
    pub fn cut(&self) {
        for s in self.shared.open.lock().expect("not poisoned").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// While `true`, new connections are closed as soon as they arrive (a server unreachable).
    pub fn refuse(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

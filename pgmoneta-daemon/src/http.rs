//! The daemon's HTTP endpoints (metrics, Nagios) on hyper.
//!
//! One thread runs a single-threaded tokio runtime that accepts on every HTTP listener; each
//! request's handler is plain blocking code run on the runtime's blocking pool, so handlers read
//! the repository and the shared state as the rest of the daemon does. TLS, when configured, is
//! OpenSSL with the same acceptor as the management port.
//!
//! Every connection is bounded ([`Limits`]): the request head's size and header count (431
//! beyond), the body's size (413 beyond), the number of open connections (further ones are
//! closed at once), the time to send a request head and the whole connection's life.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The bounds every HTTP connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request head (request line and headers), in bytes.
    pub max_header_size: usize,
    /// Most header lines in a request.
    pub max_headers: usize,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Most connections open at once on one listener.
    pub max_connections: usize,
    /// Time allowed to send a request head (and to finish the TLS handshake).
    pub head_timeout: Duration,
    /// Longest life of one connection.
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_size: 16 << 10,
            max_headers: 100,
            max_body: 64 << 10,
            max_connections: 64,
            head_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
        }
    }
}

/// A request as handlers see it: its head and whole body.
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), empty when there is none.
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (at most [`Limits::max_body`] bytes).
    pub body: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Request {
    /// The value of query parameter `key`, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        parse_query(&self.query).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs; `+` is a space. Malformed escapes stay as written.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (malformed ones stay as written); `+` is a space when `plus_is_space`
/// (in a query or a form), itself in a path.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                Some(h) => {
                    out.push(u8::from_str_radix(std::str::from_utf8(h).unwrap_or("0"), 16).unwrap_or(0));
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a handler answers.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// Headers besides `Content-Type`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `Content-Type`, when there is a body.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
    /// Sent with chunked transfer encoding, in chunks of this many bytes (`None`: with a
    /// `Content-Length`).
    pub chunked: Option<usize>,
}

/// The chunk size of chunked replies.
pub const CHUNK: usize = 16 << 10;

impl Reply {
    /// An empty reply with `status`.
    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: Bytes::new(),
            chunked: None,
        }
    }

    /// A reply with a body, sent with a `Content-Length`.
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply { status, headers: Vec::new(), content_type, body: body.into(), chunked: None }
    }

    /// The same body, sent in chunks of [`CHUNK`] bytes.
    #[must_use]
    pub fn chunked(mut self) -> Reply {
        self.chunked = Some(CHUNK);
        self
    }

    /// Adds a header; a value that is not a valid header value is left out.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: &str) -> Reply {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

/// A body given in frames of at most `chunk` bytes; of unknown length when chunked, so that
/// HTTP/1.1 sends it with chunked transfer encoding.
pub struct Body {
    data: Bytes,
    chunk: Option<usize>,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.chunk.unwrap_or(self.data.len()).min(self.data.len()).max(1);
        let frame = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.chunk {
            Some(_) if !self.data.is_empty() => SizeHint::default(),
            _ => SizeHint::with_exact(self.data.len() as u64),
        }
    }
}

/// A request handler: blocking code, run on the runtime's blocking pool.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// What answers a connection that sends nothing for the wait of [`Endpoint::silent`]: for
/// line-oriented clients such as `nc` or a plain TCP check, which read without asking.
pub type Silent = Arc<dyn Fn() -> Bytes + Send + Sync>;

/// One HTTP listener.
pub struct Endpoint {
    /// Its name in the log ("metrics", "nagios").
    pub name: &'static str,
    /// The bound listener.
    pub listener: std::net::TcpListener,
    /// TLS, when configured.
    pub tls: Option<Arc<SslAcceptor>>,
    /// Answers each request.
    pub handler: Handler,
    /// Whether each reply closes its connection (`Connection: close`).
    pub close: bool,
    /// For clients that send nothing: how long to wait, and what they get instead.
    pub silent: Option<(Duration, Silent)>,
}

struct Served {
    name: &'static str,
    tls: Option<Arc<SslAcceptor>>,
    handler: Handler,
    close: bool,
    silent: Option<(Duration, Silent)>,
    limits: Limits,
}

/// Serves `endpoints` on one thread until `stopping` says so (checked every 100 ms).
///
/// # Errors
/// The runtime or a listener could not be set up.
pub fn spawn(
    endpoints: Vec<Endpoint>,
    limits: Limits,
    stopping: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(limits.max_connections.clamp(2, 32))
        .thread_name("http handler")
        .build()?;
    let mut listeners = Vec::new();
    {
        let _guard = runtime.enter();
        for e in endpoints {
            e.listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(e.listener)?;
            let served = Arc::new(Served {
                name: e.name,
                tls: e.tls,
                handler: e.handler,
                close: e.close,
                silent: e.silent,
                limits,
            });
            listeners.push((listener, served));
        }
    }
    std::thread::Builder::new().name("http".into()).spawn(move || {
        runtime.block_on(async move {
            for (listener, served) in listeners {
                tokio::spawn(accept_loop(listener, served));
            }
            while !stopping() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(2));
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, served: Arc<Served>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(served.limits.max_connections));
    // Refusals are logged once a minute at most, with how many there were.
    let mut refused = 0u64;
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{}: accept: {e}", served.name);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                log::warn!(
                    "{}: {} connections open already; closed {refused} more (the last from {peer})",
                    served.name,
                    served.limits.max_connections
                );
                last_warning = Some(std::time::Instant::now());
                refused = 0;
            }
            continue;
        };
        let served = served.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let limit = served.limits.connection_timeout;
            match tokio::time::timeout(limit, connection(&served, tcp, peer)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("{}: {peer}: {e}", served.name),
                Err(_) => log::debug!("{}: {peer}: closed after {} s", served.name, limit.as_secs()),
            }
        });
    }
}

async fn connection(served: &Arc<Served>, tcp: tokio::net::TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    match &served.tls {
        Some(acceptor) => {
            let ssl = Ssl::new(acceptor.context()).map_err(std::io::Error::other)?;
            let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(std::io::Error::other)?;
            tokio::time::timeout(served.limits.head_timeout, Pin::new(&mut stream).accept())
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))?
                .map_err(|e| std::io::Error::other(format!("TLS handshake: {e}")))?;
            serve_io(served.clone(), stream, peer, true).await
        }
        None => serve_io(served.clone(), tcp, peer, false).await,
    }
}

/// Serves HTTP on `io` (after the silent-client wait, when the endpoint has one).
async fn serve_io<I>(served: Arc<Served>, mut io: I, peer: SocketAddr, tls: bool) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = Vec::new();
    if let Some((wait, silent)) = &served.silent {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(*wait, io.read(&mut buf)).await {
            Err(_) => {
                let answer = tokio::task::spawn_blocking({
                    let silent = silent.clone();
                    move || silent()
                })
                .await
                .map_err(std::io::Error::other)?;
                io.write_all(&answer).await?;
                io.shutdown().await?;
                return Ok(());
            }
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => first.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
    let io = Prefixed { first: Bytes::from(first), inner: io };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(served.limits.head_timeout)
        .max_header_size(served.limits.max_header_size)
        .max_headers(served.limits.max_headers)
        .max_buf_size(served.limits.max_header_size.max(8192) + served.limits.max_body.max(8192))
        .title_case_headers(true)
        .half_close(true)
        .keep_alive(!served.close);
    let service = service_fn(move |request| respond(served.clone(), request, peer, tls));
    builder.serve_connection(TokioIo::new(io), service).await.map_err(std::io::Error::other)
}

async fn respond(
    served: Arc<Served>,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Result<hyper::Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || Ok(response(Reply::empty(StatusCode::PAYLOAD_TOO_LARGE), true));
    if declared.is_some_and(|n| n > served.limits.max_body as u64) {
        return too_large();
    }
    let body = match http_body_util::Limited::new(body, served.limits.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => return Ok(response(Reply::empty(StatusCode::BAD_REQUEST), true)),
    };
    let request = Request {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
        peer,
        tls,
    };
    let handler = served.handler.clone();
    let reply = tokio::task::spawn_blocking(move || handler(&request)).await.unwrap_or_else(|e| {
        log::error!("{}: a request handler failed: {e}", served.name);
        Reply::empty(StatusCode::INTERNAL_SERVER_ERROR)
    });
    Ok(response(reply, served.close))
}

fn response(reply: Reply, close: bool) -> hyper::Response<Body> {
    let Reply { status, headers, content_type, body, chunked } = reply;
    let mut r = hyper::Response::new(Body { data: body, chunk: chunked });
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (k, v) in headers {
        h.append(k, v);
    }
    if close {
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A stream whose first bytes were already read.
struct Prefixed<I> {
    first: Bytes,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            let part = self.first.split_to(n);
            buf.put_slice(&part);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Statuses the server may answer an arbitrary request with (handlers of the fuzz harness
/// answer 200, 400 and 403).
const FUZZ_STATUSES: [u16; 8] = [200, 400, 403, 405, 408, 413, 431, 505];

/// Sends `data` as a client would, over an in-memory connection, to a server with the default
/// [`Limits`] and a handler routed like the metrics port; returns what came back.
fn exchange(data: &[u8]) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let handler: Handler = Arc::new(|r: &Request| match (r.method.clone(), r.path.as_str()) {
            (Method::GET, "/metrics" | "/") => Reply::new(StatusCode::OK, "text/plain", "x 1\n").chunked(),
            (Method::GET, _) => Reply::empty(StatusCode::FORBIDDEN),
            _ => Reply::empty(StatusCode::BAD_REQUEST),
        });
        let served = Arc::new(Served {
            name: "fuzz",
            tls: None,
            handler,
            close: true,
            silent: None,
            limits: Limits { head_timeout: Duration::from_secs(2), ..Limits::default() },
        });
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        let task = tokio::spawn(serve_io(served, server, peer, false));
        let data = data.to_vec();
        let writer = async move {
            let _ = client.write_all(&data).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(10), writer).await.unwrap_or_default();
        let _ = task.await;
        out
    })
}

/// The invariants of the HTTP server on arbitrary bytes, for the fuzz target `http_request`
/// and the test that replays its seed corpus: no panic; every answer is an HTTP/1 status line
/// with a status from a known set; a request head over the size limit never gets a 200.
/// Returns the status of the first answer, if any.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_http_request(data: &[u8]) -> Option<u16> {
    let out = exchange(data);
    if out.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&out);
    let status_line = text.lines().next().unwrap_or("");
    assert!(status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "), "{status_line:?}");
    let status: u16 = status_line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{status_line:?}"));
    assert!(FUZZ_STATUSES.contains(&status), "status {status} for {:?}", String::from_utf8_lossy(data));
    let head_end =
        data.windows(2).position(|w| w == b"\n\n").or_else(|| data.windows(4).position(|w| w == b"\r\n\r\n"));
    if head_end.is_none_or(|end| end > Limits::default().max_header_size)
        && data.len() > Limits::default().max_header_size
    {
        assert_ne!(status, 200, "a head over the limit was answered");
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            parse_query("server=pri%20mary&x=a+b&&flag&bad=%zz%4"),
            vec![
                ("server".to_owned(), "pri mary".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
                ("bad".to_owned(), "%zz%4".to_owned()),
            ]
        );
    }

    #[test]
    fn prefixed_reads_its_first_bytes_first() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (mut a, b) = tokio::io::duplex(64);
            a.write_all(b"world").await.unwrap();
            drop(a);
            let mut p = Prefixed { first: Bytes::from_static(b"hello "), inner: b };
            let mut s = String::new();
            p.read_to_string(&mut s).await.unwrap();
            assert_eq!(s, "hello world");
        });
    }

    #[test]
    fn http_request_seed_corpus() {
        let files = pgmoneta_testkit::fuzz_seeds("http_request");
        assert!(files.len() >= 8);
        for (name, data) in &files {
            let status = std::panic::catch_unwind(|| check_http_request(data))
                .unwrap_or_else(|_| panic!("seed {name} breaks an invariant"));
            let expected = match name.as_str() {
                "get-metrics" | "get-root-http10" | "bare-newlines" => Some(200),
                "long-line" => Some(403),
                "many-headers" => Some(431),
                "no-path" | "post" | "not-utf8" => Some(400),
                _ => status,
            };
            assert_eq!(status, expected, "seed {name}");
        }
        // Chunked, as the metrics port answers.
        let out = String::from_utf8(exchange(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")).unwrap();
        assert!(out.contains("Transfer-Encoding: chunked\r\n") && out.contains("\r\n4\r\nx 1\n\r\n0\r\n\r\n"), "{out}");
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20 << 10));
        assert_eq!(check_http_request(big.as_bytes()), Some(431));
        let body = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 100 << 10);
        assert_eq!(check_http_request(body.as_bytes()), Some(413));
    }
}

//! The `nagios` port: one Nagios status line about every server and the repository.
//!
//! Upstream's clients read without asking (`nc host port`): a connection that sends nothing for
//! half a second gets the line as upstream frames it, its length in hexadecimal, CRLF, the line,
//! CRLF, and is closed. An HTTP client (`check_http`, a browser, curl) asks `GET /`, optionally
//! with `?server=<name>` and thresholds as query parameters (the names of `pgmoneta-cli check`'s
//! options: `backup_age_warning=36h`, `wal_lag_critical=512MB`, `free_warning=20%`, ...), and gets
//! the line as `text/plain`; the state is also in the `X-Nagios-State` header (0 to 3).
//!
//! The line reads the daemon's own state (see `pgmoneta_wire::management::check`), not the
//! metrics port, so it works whether or not `metrics` is set.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use openssl::ssl::SslAcceptor;
use pgmoneta_wire::management::check::{evaluate, parse_bytes, parse_duration, status_line, Space, State, Thresholds};

use crate::http::{Endpoint, Reply, Request};
use crate::state::Shared;

/// How long a connection may stay silent before it is taken for upstream's kind of client.
pub const SILENT_AFTER: Duration = Duration::from_millis(500);

/// Thresholds from query parameters over the defaults.
///
/// # Errors
/// The parameter and what is wrong with its value, or an unknown parameter.
pub fn thresholds(pairs: &[(String, String)]) -> Result<Thresholds, String> {
    let mut t = Thresholds::default();
    for (k, v) in pairs {
        let named = |e: String| format!("{k}: {e}");
        match k.as_str() {
            "server" => {}
            "backup_age_warning" => t.backup_age.0 = parse_duration(v).map_err(named)?,
            "backup_age_critical" => t.backup_age.1 = parse_duration(v).map_err(named)?,
            "wal_lag_warning" => t.wal_lag.0 = parse_bytes(v).map_err(named)?,
            "wal_lag_critical" => t.wal_lag.1 = parse_bytes(v).map_err(named)?,
            "free_warning" => t.free.0 = Space::parse(v).map_err(named)?,
            "free_critical" => t.free.1 = Space::parse(v).map_err(named)?,
            "verification" => {
                t.verification = match v.as_str() {
                    "on" | "true" | "1" => true,
                    "off" | "false" | "0" => false,
                    _ => return Err(format!("{k}: on or off, not {v:?}")),
                }
            }
            _ => return Err(format!("unknown parameter {k:?}")),
        }
    }
    Ok(t)
}

/// The status line and its state for `server` (all when `None`) with `limits`.
pub fn line(shared: &Shared, server: Option<&str>, limits: &Thresholds) -> (State, String) {
    match crate::commands::check_facts(shared, server) {
        Ok(facts) => (evaluate(&facts, limits).state, status_line(&facts, limits)),
        Err(e) => (State::Unknown, format!("PGMONETA UNKNOWN - {}\n", e.message())),
    }
}

/// Answers an HTTP request on the Nagios port.
pub fn handle(shared: &Shared, request: &Request) -> Reply {
    if request.method != Method::GET {
        return Reply::empty(StatusCode::BAD_REQUEST);
    }
    if request.path != "/" {
        return Reply::empty(StatusCode::FORBIDDEN);
    }
    let pairs = crate::http::parse_query(&request.query);
    let (state, text) = match thresholds(&pairs) {
        Ok(limits) => {
            let server = pairs.iter().find(|(k, _)| k == "server").map(|(_, v)| v.as_str());
            line(shared, server, &limits)
        }
        Err(e) => (State::Unknown, format!("PGMONETA UNKNOWN - {}\n", e.replace(['\n', '|'], " "))),
    };
    Reply::new(StatusCode::OK, "text/plain; charset=utf-8", text)
        .chunked()
        .header(hyper::header::HeaderName::from_static("x-nagios-state"), &state.code().to_string())
}

/// The line as upstream sends it to a client that asks nothing.
pub fn unasked(shared: &Shared) -> Bytes {
    let (_, text) = line(shared, None, &Thresholds::default());
    Bytes::from(format!("{:X}\r\n{text}\r\n", text.len()))
}

/// The Nagios port's endpoint (TLS with the metrics port's certificate, when set).
pub fn endpoint(shared: Arc<Shared>, listener: TcpListener, tls: Option<Arc<SslAcceptor>>) -> Endpoint {
    let silent = shared.clone();
    Endpoint {
        name: "nagios",
        listener,
        tls,
        handler: Arc::new(move |request: &Request| handle(&shared, request)),
        close: true,
        silent: Some((SILENT_AFTER, Arc::new(move || unasked(&silent)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_come_from_the_query() {
        let pairs = crate::http::parse_query("server=a&backup_age_warning=2d&wal_lag_critical=1GB&free_warning=5GB");
        let t = thresholds(&pairs).unwrap();
        assert_eq!(t.backup_age, (2 * 86_400, Thresholds::default().backup_age.1));
        assert_eq!(t.wal_lag.1, 1 << 30);
        assert_eq!(t.free.0, Space::Bytes(5 << 30));
        let bad = thresholds(&crate::http::parse_query("wal_lag_warning=lots")).unwrap_err();
        assert!(bad.starts_with("wal_lag_warning: "), "{bad}");
        assert!(thresholds(&crate::http::parse_query("colour=red")).unwrap_err().contains("colour"));
    }
}

//! The web console (`console = <port>`): upstream's page and `/api`, a page per server with
//! charts, and, for an admin who logged in, the operations an operator runs on a bad day.
//!
//! - `GET /`: the servers and the metrics explorer (category, simple or advanced view, server
//!   filter, search), all as query parameters, so that it reads without JavaScript.
//! - `GET /api`: every metric as JSON, in upstream's shape.
//! - `GET /server/<name>`: streaming, the archive, the running operation, charts of WAL lag and
//!   archive size (from a bounded in-memory history) and of the backups' sizes and durations,
//!   and the backup list.
//! - `GET /login`, `POST /login`, `POST /logout`: sessions for the admins of
//!   `pgmoneta_admins.conf` (an HttpOnly, SameSite=Strict cookie; `Secure` over TLS), expiring
//!   after 30 minutes unused or 12 hours in all.
//! - `POST /server/<name>/{backup,verify,retain,expunge,annotate,delete}`: the actions, each
//!   checked against the session's CSRF token and the request's `Origin`, run as the management
//!   command of the same name, and logged with the admin's name. `console_actions = off` turns
//!   them and the login off.
//!
//! The page's stylesheet and its small script ship in the binary; the page sets a
//! Content-Security-Policy that allows nothing else.

pub mod chart;
pub mod history;
pub mod page;
pub mod views;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, CACHE_CONTROL, LOCATION, SET_COOKIE};
use hyper::{Method, StatusCode};
use openssl::ssl::SslAcceptor;
use parking_lot::Mutex;
use pgmoneta_wire::management::request::{
    self as wire_request, AnnotateRequest, BackupRequest, DeleteRequest, KeepRequest, VerifyRequest,
};
use pgmoneta_wire::management::{Command, Document, OutputFormat};

use crate::http::{parse_query, Endpoint, Reply, Request};
use crate::state::Shared;
use history::History;
use page::{Frame, Viewer};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/favicon.svg");

/// Name of the session cookie.
pub const COOKIE: &str = "pgmoneta_console";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after the login, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once; the least recently used goes first.
const MAX_SESSIONS: usize = 256;
/// Failed logins from one address within [`LOCKOUT`] after which its logins are refused.
const MAX_FAILURES: u32 = 5;
/// How long failures count, and how long a locked-out address waits.
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Actions remembered for the pages.
const KEPT_ACTIONS: usize = 100;

struct Session {
    user: String,
    csrf: String,
    created: Instant,
    seen: Instant,
}

/// One action started from the console.
#[derive(Clone, Debug)]
pub struct Action {
    /// Its number, unique in the daemon's life.
    pub id: u64,
    /// Local time it started, `YYYY-MM-DD HH:MM:SS`.
    pub started: String,
    /// The admin.
    pub user: String,
    /// The server.
    pub server: String,
    /// What, in words.
    pub what: String,
    /// `None` while it runs; then the outcome in words.
    pub outcome: Option<Result<String, String>>,
}

/// The console's state: sessions, the history behind its charts, the actions it started.
pub struct Console {
    shared: Arc<Shared>,
    history: Arc<History>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    actions: Arc<Mutex<VecDeque<Action>>>,
    next_action: std::sync::atomic::AtomicU64,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    openssl::rand::rand_bytes(&mut b).expect("the system's random generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

fn local_time() -> String {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let t = pgmoneta_core::CivilDateTime::from_unix(unix, crate::clock::utc_offset(unix));
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

fn now_label() -> String {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let t = pgmoneta_core::CivilDateTime::from_unix(unix, 0);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// The value of cookie `name` in the request.
fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Security headers every page carries.
fn secured(reply: Reply) -> Reply {
    reply
        .header(
            HeaderName::from_static("content-security-policy"),
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header(HeaderName::from_static("x-content-type-options"), "nosniff")
        .header(HeaderName::from_static("referrer-policy"), "same-origin")
        .header(HeaderName::from_static("x-frame-options"), "DENY")
}

fn html(status: StatusCode, body: String) -> Reply {
    secured(Reply::new(status, "text/html; charset=utf-8", body).chunked()).header(CACHE_CONTROL, "no-store")
}

fn redirect(to: &str) -> Reply {
    secured(Reply::empty(StatusCode::SEE_OTHER)).header(LOCATION, to)
}

/// Only a path of this site: `/...` but not `//host`.
fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.contains(['\r', '\n']) {
        next
    } else {
        "/"
    }
}

impl Console {
    /// A console over `shared`, its history sampled by [`history::spawn`].
    pub fn new(shared: Arc<Shared>, history: Arc<History>) -> Console {
        Console {
            shared,
            history,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            actions: Arc::new(Mutex::new(VecDeque::new())),
            next_action: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Whether actions (and so logins) are on.
    fn actions_enabled(&self) -> bool {
        self.shared.config().main.console_actions
    }

    /// The session of the request, refreshed; `None` when absent or expired.
    fn session(&self, request: &Request) -> Option<(String, String, String)> {
        let token = cookie(request, COOKIE)?;
        let mut sessions = self.sessions.lock();
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME);
        let s = sessions.get_mut(token)?;
        // An admin removed from the vault (and reloaded) loses the session.
        if !self.shared.admins.read().contains_key(&s.user) {
            return None;
        }
        s.seen = now;
        Some((token.to_owned(), s.user.clone(), s.csrf.clone()))
    }

    fn frame<'a>(
        &self,
        title: &'a str,
        servers: &'a [String],
        current: Option<&'a str>,
        viewer: Option<Viewer<'a>>,
        tls: bool,
        notice: Option<&'a str>,
    ) -> Frame<'a> {
        Frame {
            title,
            version: crate::commands::SERVER_VERSION,
            updated: local_time(),
            servers,
            current,
            viewer,
            login: self.actions_enabled() && !self.shared.admins.read().is_empty(),
            tls,
            notice,
        }
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Reply {
        let path = request.path.as_str();
        match (&request.method, path) {
            (&Method::GET, "/console.css") => {
                Reply::new(StatusCode::OK, "text/css; charset=utf-8", CSS).header(CACHE_CONTROL, "max-age=3600")
            }
            (&Method::GET, "/console.js") => {
                Reply::new(StatusCode::OK, "text/javascript; charset=utf-8", JS).header(CACHE_CONTROL, "max-age=3600")
            }
            (&Method::GET, "/favicon.svg") => {
                Reply::new(StatusCode::OK, "image/svg+xml", ICON).header(CACHE_CONTROL, "max-age=86400")
            }
            (&Method::GET, "/api" | "/api/") => {
                let families = crate::metrics::collect(&self.shared).families();
                let body = views::api(&families, crate::commands::SERVER_VERSION).to_string();
                Reply::new(StatusCode::OK, "application/json; charset=utf-8", body)
                    .chunked()
                    .header(CACHE_CONTROL, "no-store")
            }
            (&Method::GET, "/" | "/index.html") => self.index(request),
            (&Method::GET, "/login") => self.login_page(request, None),
            (&Method::POST, "/login") => self.login(request),
            (&Method::POST, "/logout") => self.logout(request),
            (&Method::GET, p) if p.starts_with("/server/") => self.server_page(request, &p["/server/".len()..]),
            (&Method::POST, p) if p.starts_with("/server/") => self.act(request, &p["/server/".len()..]),
            (&Method::GET | &Method::POST, _) => {
                html(StatusCode::NOT_FOUND, self.message_page(request, "Not found", "There is no such page."))
            }
            _ => secured(Reply::empty(StatusCode::METHOD_NOT_ALLOWED)).header(hyper::header::ALLOW, "GET, POST"),
        }
    }

    fn servers(&self) -> Vec<String> {
        self.shared.servers.iter().map(|s| s.name.clone()).collect()
    }

    fn message_page(&self, request: &Request, title: &str, text: &str) -> String {
        let servers = self.servers();
        let session = self.session(request);
        let viewer = session.as_ref().map(|(_, u, c)| Viewer { user: u, csrf: c });
        let body = format!("<section class=\"card\"><h1>{}</h1><p>{}</p></section>", page::esc(title), page::esc(text));
        page::layout(&self.frame(title, &servers, Some(""), viewer, request.tls, None), &body)
    }

    fn index(&self, request: &Request) -> Reply {
        let q = parse_query(&request.query);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let explore = views::Explore {
            category: get("category"),
            advanced: get("view").as_deref() == Some("advanced"),
            server: get("server"),
            search: get("q").unwrap_or_default(),
        };
        let families = crate::metrics::collect(&self.shared).families();
        let body = views::index(&self.shared, &families, &explore);
        let session = self.session(request);
        let viewer = session.as_ref().map(|(_, u, c)| Viewer { user: u, csrf: c });
        let servers = self.servers();
        let notice = self.notice(&q);
        html(
            StatusCode::OK,
            page::layout(&self.frame("Overview", &servers, None, viewer, request.tls, notice.as_deref()), &body),
        )
    }

    fn server_page(&self, request: &Request, name: &str) -> Reply {
        let name = crate::http::percent_decode(name, false);
        let q = parse_query(&request.query);
        let hours = q
            .iter()
            .find(|(k, _)| k == "hours")
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .filter(|h| (1..=24).contains(h))
            .unwrap_or(6);
        let session = self.session(request);
        let viewer = session.as_ref().map(|(_, u, c)| Viewer { user: u, csrf: c });
        let acting = views::Acting {
            viewer: session.as_ref().map(|(_, u, c)| Viewer { user: u, csrf: c }),
            enabled: self.actions_enabled(),
        };
        let Some(mut body) = views::server(&self.shared, &self.history, &name, hours, &acting) else {
            return html(
                StatusCode::NOT_FOUND,
                self.message_page(request, "Not found", &format!("No server named {name:?}.")),
            );
        };
        body.push_str(&self.actions_list(&name));
        let servers = self.servers();
        let notice = self.notice(&q);
        html(
            StatusCode::OK,
            page::layout(&self.frame(&name, &servers, Some(&name), viewer, request.tls, notice.as_deref()), &body),
        )
    }

    fn actions_list(&self, server: &str) -> String {
        let actions = self.actions.lock();
        let mine: Vec<&Action> = actions.iter().rev().filter(|a| a.server == server).take(10).collect();
        if mine.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "<section><h2>Actions from the console</h2><div class=\"scroll\"><table class=\"grid\"><thead><tr>\
             <th>Started</th><th>By</th><th>What</th><th>Outcome</th></tr></thead><tbody>",
        );
        for a in mine {
            let outcome = match &a.outcome {
                None => page::badge("unknown", "running"),
                Some(Ok(m)) => format!("{} {}", page::badge("ok", "done"), page::esc(m)),
                Some(Err(m)) => format!("{} {}", page::badge("critical", "failed"), page::esc(m)),
            };
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td></tr>",
                page::esc(&a.started),
                page::esc(&a.user),
                page::esc(&a.what)
            ));
        }
        out.push_str("</tbody></table></div></section>");
        out
    }

    fn login_page(&self, request: &Request, error: Option<&str>) -> Reply {
        let servers = self.servers();
        if !self.actions_enabled() {
            let body = "<section class=\"card\"><h1>Read-only console</h1><p>This console is read-only \
                        (<code>console_actions = off</code>).</p></section>";
            return html(
                StatusCode::NOT_FOUND,
                page::layout(&self.frame("Log in", &servers, Some(""), None, request.tls, None), body),
            );
        }
        let next =
            parse_query(&request.query).into_iter().find(|(k, _)| k == "next").map(|(_, v)| v).unwrap_or_default();
        let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
        html(
            status,
            page::layout(
                &self.frame("Log in", &servers, Some(""), None, request.tls, None),
                &views::login(local_path(&next), error, request.tls),
            ),
        )
    }

    fn login(&self, request: &Request) -> Reply {
        if !self.actions_enabled() {
            return self.login_page(request, None);
        }
        if let Some(refusal) = self.cross_origin(request) {
            return refusal;
        }
        let form = parse_query(&String::from_utf8_lossy(&request.body));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
        let (user, password, next) = (get("user"), get("password"), local_path(get("next")).to_owned());
        let ip = request.peer.ip();
        {
            let mut failures = self.failures.lock();
            failures.retain(|_, (_, since)| since.elapsed() < LOCKOUT);
            if failures.get(&ip).is_some_and(|(n, _)| *n >= MAX_FAILURES) {
                log::warn!("console: login as {user:?} from {ip} refused: too many failed logins");
                return self
                    .login_page(request, Some("Too many failed logins from this address; try again in 15 minutes."));
            }
        }
        let known = self.shared.admins.read().get(user).cloned();
        let ok = known.as_deref().is_some_and(|p| same_secret(p, password)) && !password.is_empty();
        if !ok {
            {
                let mut failures = self.failures.lock();
                let entry = failures.entry(ip).or_insert((0, Instant::now()));
                entry.0 += 1;
            }
            log::warn!("console: failed login as {user:?} from {ip}");
            // Slows guessing down; runs on the handler pool, not the connection loop.
            std::thread::sleep(Duration::from_millis(500));
            return self.login_page(request, Some("Wrong user name or password."));
        }
        self.failures.lock().remove(&ip);
        let token = random_hex(32);
        {
            let mut sessions = self.sessions.lock();
            if sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| k.clone()) {
                    sessions.remove(&oldest);
                }
            }
            let now = Instant::now();
            sessions.insert(
                token.clone(),
                Session { user: user.to_owned(), csrf: random_hex(16), created: now, seen: now },
            );
        }
        log::info!("console: admin {user} logged in from {ip}");
        let secure = if request.tls { "; Secure" } else { "" };
        redirect(&next).header(
            SET_COOKIE,
            &format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", LIFETIME.as_secs()),
        )
    }

    fn logout(&self, request: &Request) -> Reply {
        let Some((token, user, csrf)) = self.session(request) else { return redirect("/") };
        if let Some(refusal) = self.forged(request, &csrf) {
            return refusal;
        }
        self.sessions.lock().remove(&token);
        log::info!("console: admin {user} logged out");
        redirect("/").header(SET_COOKIE, &format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"))
    }

    /// A refusal when the request's `Origin` (or, without one, its `Referer`) is another site.
    fn cross_origin(&self, request: &Request) -> Option<Reply> {
        let host = request.headers.get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin = request
            .headers
            .get(hyper::header::ORIGIN)
            .or_else(|| request.headers.get(hyper::header::REFERER))
            .and_then(|h| h.to_str().ok());
        let origin = origin?;
        let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")).unwrap_or("");
        let origin_host = rest.split('/').next().unwrap_or("");
        if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
            return None;
        }
        log::warn!("console: refused a request from {} for {} with origin {origin:?}", request.peer.ip(), request.path);
        Some(html(StatusCode::FORBIDDEN, self.message_page(request, "Refused", "The request came from another site.")))
    }

    /// A refusal when the form's CSRF token is not the session's (or the origin is foreign).
    fn forged(&self, request: &Request, csrf: &str) -> Option<Reply> {
        if let Some(r) = self.cross_origin(request) {
            return Some(r);
        }
        let form = parse_query(&String::from_utf8_lossy(&request.body));
        let sent = form.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if same_secret(sent, csrf) {
            return None;
        }
        log::warn!(
            "console: refused a request from {} for {} without a valid CSRF token",
            request.peer.ip(),
            request.path
        );
        Some(html(
            StatusCode::FORBIDDEN,
            self.message_page(
                request,
                "Refused",
                "The form is not one this console gave you (missing or wrong token). Reload the page and try again.",
            ),
        ))
    }

    /// `POST /server/<name>/<action>`.
    fn act(&self, request: &Request, rest: &str) -> Reply {
        let Some((raw_name, action)) = rest.rsplit_once('/') else {
            return html(StatusCode::NOT_FOUND, self.message_page(request, "Not found", "There is no such action."));
        };
        let name = crate::http::percent_decode(raw_name, false);
        if !self.actions_enabled() {
            return html(
                StatusCode::FORBIDDEN,
                self.message_page(request, "Read-only", "This console is read-only (console_actions = off)."),
            );
        }
        let Some((_, user, csrf)) = self.session(request) else {
            if let Some(r) = self.cross_origin(request) {
                return r;
            }
            return redirect(&format!("/login?next=/server/{}", page::url(&name)));
        };
        if let Some(refusal) = self.forged(request, &csrf) {
            return refusal;
        }
        if self.shared.server(&name).is_none() {
            return html(
                StatusCode::NOT_FOUND,
                self.message_page(request, "Not found", &format!("No server named {name:?}.")),
            );
        }
        let form = parse_query(&String::from_utf8_lossy(&request.body));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let backup = get("backup");
        let server = Some(name.clone());
        let need_backup = || backup.clone().ok_or("no-backup");
        let planned: Result<(Command, serde_json::Map<String, serde_json::Value>, String), &str> = match action {
            "backup" => {
                let parent = get("parent");
                let what = match &parent {
                    Some(p) => format!("incremental backup on {p}"),
                    None => "full backup".to_owned(),
                };
                Ok((Command::Backup, wire_request::to_map(&BackupRequest { server, backup: parent }), what))
            }
            "verify" => need_backup().map(|b| {
                let r = VerifyRequest { server, backup: Some(b.clone()), directory: None, files: None };
                (Command::Verify, wire_request::to_map(&r), format!("verify {b}"))
            }),
            "retain" | "expunge" => need_backup().map(|b| {
                let r = KeepRequest { server, backup: Some(b.clone()), cascade: false };
                let c = if action == "retain" { Command::Retain } else { Command::Expunge };
                (c, wire_request::to_map(&r), format!("{action} {b}"))
            }),
            "annotate" => need_backup().and_then(|b| {
                let act = get("action").unwrap_or_default();
                if !["add", "update", "remove"].contains(&act.as_str()) {
                    return Err("annotation-action");
                }
                let key = get("key").ok_or("no-key")?;
                let comment = get("comment");
                let what = format!("annotate {b}: {act} {key}");
                let r = AnnotateRequest { server, backup: Some(b), action: Some(act), key: Some(key), comment };
                Ok((Command::Annotate, wire_request::to_map(&r), what))
            }),
            "delete" => need_backup().and_then(|b| {
                if get("confirm").as_deref() != Some("yes") {
                    return Err("confirm");
                }
                let r = DeleteRequest { server, backup: Some(b.clone()), force: false };
                Ok((Command::Delete, wire_request::to_map(&r), format!("delete {b}")))
            }),
            _ => {
                return html(
                    StatusCode::NOT_FOUND,
                    self.message_page(request, "Not found", "There is no such action."),
                );
            }
        };
        let back = format!("/server/{}", page::url(&name));
        let (command, fields, what) = match planned {
            Ok(p) => p,
            Err(why) => return redirect(&format!("{back}?notice={why}")),
        };
        log::info!("console: admin {user} from {}: {what} of server [{name}]", request.peer.ip());
        let id = self.start(user, name.clone(), what, command, fields);
        redirect(&format!("{back}?notice=started&action={id}"))
    }

    /// Runs a management command for an action in the background and records its outcome.
    fn start(
        &self,
        user: String,
        server: String,
        what: String,
        command: Command,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> u64 {
        let id = self.next_action.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut actions = self.actions.lock();
            if actions.len() == KEPT_ACTIONS {
                actions.pop_front();
            }
            let (user, server, what) = (user.clone(), server.clone(), what.clone());
            actions.push_back(Action { id, started: local_time(), user, server, what, outcome: None });
        }
        let (shared, actions) = (self.shared.clone(), self.actions.clone());
        let spawned = std::thread::Builder::new().name("console action".into()).spawn(move || {
            let doc = Document::request(command, fields, OutputFormat::Json, &now_label());
            let reply = crate::commands::dispatch(&shared, doc, Instant::now());
            let outcome = match reply.outcome {
                Some(o) if o.status => {
                    let detail = reply
                        .response
                        .as_ref()
                        .and_then(|r| r.get("Backup"))
                        .and_then(|v| v.as_str())
                        .map(|b| format!("backup {b}"));
                    Ok(detail.unwrap_or_else(|| o.time.map(|t| format!("in {t}")).unwrap_or_default()))
                }
                Some(o) => Err(o.message.unwrap_or_else(|| format!("error {}", o.error.unwrap_or(0)))),
                None => Err("no outcome".to_owned()),
            };
            match &outcome {
                Ok(m) => log::info!("console: admin {user}: {what} of server [{server}] done {m}"),
                Err(m) => log::error!("console: admin {user}: {what} of server [{server}] failed: {m}"),
            }
            if let Some(entry) = actions.lock().iter_mut().find(|x| x.id == id) {
                entry.outcome = Some(outcome);
            }
        });
        if let Err(e) = spawned {
            log::error!("console: starting an action: {e}");
        }
        id
    }

    /// The message a page shows after an action, from its query: one of a fixed set (a link
    /// from elsewhere cannot make the page say anything else).
    fn notice(&self, query: &[(String, String)]) -> Option<String> {
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        Some(match get("notice")? {
            "started" => {
                let id: u64 = get("action")?.parse().ok()?;
                let what = self.actions.lock().iter().find(|a| a.id == id)?.what.clone();
                format!("Started: {what}. Its outcome shows below.")
            }
            "no-backup" => "No backup was given.".to_owned(),
            "annotation-action" => "An annotation's action is add, update or remove.".to_owned(),
            "no-key" => "An annotation needs a key.".to_owned(),
            "confirm" => "A delete needs its confirmation box ticked.".to_owned(),
            _ => return None,
        })
    }

    /// The actions started from the console, oldest first.
    pub fn actions(&self) -> Vec<Action> {
        self.actions.lock().iter().cloned().collect()
    }
}

/// The console port's endpoint (TLS with the metrics port's certificate, when set).
pub fn endpoint(console: Arc<Console>, listener: TcpListener, tls: Option<Arc<SslAcceptor>>) -> Endpoint {
    Endpoint {
        name: "console",
        listener,
        tls,
        handler: Arc::new(move |request: &Request| console.handle(request)),
        close: false,
        silent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path("/server/a"), "/server/a");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("/\\evil"), "/");
        assert_eq!(local_path(""), "/");
    }

    #[test]
    fn secrets_compare_in_full() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert_eq!(random_hex(16).len(), 32);
    }
}

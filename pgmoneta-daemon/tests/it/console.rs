//! The web console: HTTP-level checks of its pages, `/api`, sessions and CSRF, then a real
//! browser (headless Chromium through WebDriver) reading and acting on a running daemon.
//! Screenshots of each page go to `target/console-screenshots/`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use pgmoneta_testkit::Browser;
use serde_json::{json, Value};

use crate::{cluster, free_port, Daemon, ADMIN_PASSWORD};

/// One HTTP exchange: status line and headers, and the body (chunks joined).
fn exchange(port: u16, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head.contains("Transfer-Encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (head.to_owned(), body)
}

fn get(port: u16, path: &str, cookie: Option<&str>) -> (String, String) {
    let c = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    exchange(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{c}Connection: close\r\n\r\n"))
}

fn post(port: u16, path: &str, cookie: Option<&str>, form: &str, origin: Option<&str>) -> (String, String) {
    let c = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let o = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    exchange(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{c}{o}Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// Logs in over HTTP; the session cookie and the page's CSRF token.
fn login(port: u16) -> (String, String) {
    let (head, _) = post(port, "/login", None, &format!("user=admin&password={ADMIN_PASSWORD}&next=%2F"), None);
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = header(&head, "Set-Cookie").unwrap().split(';').next().unwrap().to_owned();
    let (_, page) = get(port, "/server/primary", Some(&cookie));
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    let csrf = page[at..at + 32].to_owned();
    (cookie, csrf)
}

fn labels(d: &Daemon) -> Vec<String> {
    let list = d.ok(&["list-backup", "primary"]);
    list["Backups"].as_array().unwrap().iter().map(|b| b["Backup"].as_str().unwrap().to_owned()).collect()
}

/// Waits for an element matching `css` whose text holds `needle`: after a click that submits a
/// form, the old page may still be there, or its elements go stale while the new one loads.
fn wait_text(b: &Browser, css: &str, needle: &str) {
    b.wait_until(&format!("{css} saying {needle:?}"), Duration::from_secs(20), |b| {
        b.find_all(css)
            .map(|all| all.iter().any(|e| b.text(e).map(|t| t.contains(needle)).unwrap_or(false)))
            .unwrap_or(false)
    })
    .unwrap();
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_console_over_http() {
    let source = cluster();
    let port = free_port();
    let mut d = Daemon::new(&source, &format!("console = {port}"));
    d.start();
    d.wait_streaming();
    let label = d.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();

    // /api: upstream's shape, every metric with its labels.
    let (head, body) = get(port, "/api", None);
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("application/json"), "{head}");
    let api: Value = serde_json::from_str(&body).unwrap();
    let cats = api["categories"].as_array().unwrap();
    let names: Vec<&str> = cats.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for c in ["state", "backup", "wal", "server"] {
        assert!(names.contains(&c), "{c} missing from {names:?}");
    }
    let backup = cats.iter().find(|c| c["name"] == "backup").unwrap();
    assert!(backup["metrics"].as_array().unwrap().iter().any(|m| m["name"] == "valid"
        && m["type"] == "gauge"
        && m["value"] == json!(1.0)
        && m["labels"]["name"] == "primary"));

    // The pages, with a policy that allows nothing from elsewhere.
    let (head, page) = get(port, "/", None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(header(&head, "Content-Security-Policy").unwrap().contains("default-src 'none'"));
    assert!(page.contains("<a href=\"/server/primary\">primary</a>") && page.contains("Metrics"), "{page}");
    let (_, page) = get(port, "/?category=backup&view=advanced", None);
    assert!(page.contains("<code>pgmoneta_backup_valid</code>"), "the advanced view names metrics in full");
    let (_, page) = get(port, "/?q=streaming&server=primary", None);
    assert!(page.contains("Search: streaming") && page.contains("wal_streaming"), "search finds across categories");
    let (head, page) = get(port, "/server/primary", None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(page.contains(&format!("<code>{label}</code>")) && page.contains("<svg class=\"chart\""), "{page}");
    assert!(!page.contains("Back up now"), "no actions before logging in");
    let (_, page) = get(port, "/server/primary?notice=Log%20in%20at%20evil.example", None);
    assert!(!page.contains("evil.example"), "a page shows only its own notices");
    let (head, _) = get(port, "/server/nosuch", None);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, css) = get(port, "/console.css", None);
    assert!(head.contains("text/css") && css.contains("light-dark("), "{head}");

    // Acting needs a session; a wrong password gets none.
    let (head, _) = post(port, "/server/primary/backup", None, "", None);
    assert!(head.starts_with("HTTP/1.1 303") && header(&head, "Location").unwrap().starts_with("/login"), "{head}");
    let (head, page) = post(port, "/login", None, "user=admin&password=wrong", None);
    assert!(head.starts_with("HTTP/1.1 401") && page.contains("Wrong user name or password"), "{head}");
    assert!(header(&head, "Set-Cookie").is_none());
    let (cookie, csrf) = login(port);
    assert!(cookie.starts_with("pgmoneta_console="));

    // A forged action: no token, a wrong one, another site's origin.
    for (form, origin) in [
        (String::new(), None),
        ("csrf=0123456789abcdef0123456789abcdef".to_owned(), None),
        (format!("csrf={csrf}"), Some("http://evil.example")),
    ] {
        let (head, page) = post(port, "/server/primary/backup", Some(&cookie), &form, origin);
        assert!(head.starts_with("HTTP/1.1 403") && page.contains("Refused"), "{form} {origin:?}: {head}");
    }
    assert_eq!(labels(&d), vec![label.clone()], "no forged backup ran");

    // A real one: annotate, then a backup, both logged with the admin's name.
    let form = format!("csrf={csrf}&backup={label}&action=add&key=ticket&comment=INC-42");
    let (head, _) =
        post(port, "/server/primary/annotate", Some(&cookie), &form, Some(&format!("http://127.0.0.1:{port}")));
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    d.wait_for("the annotation", || {
        let info = d.ok(&["info", "primary", &label]);
        info["Comments"].as_str().unwrap_or_default().contains("ticket|INC-42")
    });
    let (head, _) = post(port, "/server/primary/backup", Some(&cookie), &format!("csrf={csrf}"), None);
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    d.wait_for("the console's backup", || labels(&d).len() == 2);
    let log = d.log_text();
    assert!(log.contains("console: admin admin from 127.0.0.1: full backup of server [primary]"), "{log}");
    assert!(log.contains("console: admin admin: annotate"), "{log}");

    // Logging out ends the session.
    let (head, _) = post(port, "/logout", Some(&cookie), &format!("csrf={csrf}"), None);
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let (head, _) = post(port, "/server/primary/backup", Some(&cookie), &format!("csrf={csrf}"), None);
    assert!(header(&head, "Location").unwrap_or_default().starts_with("/login"), "{head}");

    // Read-only: the login goes too.
    d.edit_main(&format!("console = {port}"), &format!("console = {port}\nconsole_actions = off"));
    d.ok(&["conf", "reload"]);
    let (head, page) = post(port, "/login", None, &format!("user=admin&password={ADMIN_PASSWORD}"), None);
    assert!(!head.contains("Set-Cookie") && page.contains("read-only"), "{head}");
}

#[test]
fn the_console_in_a_browser() {
    let Some(_) = pgmoneta_testkit::require(
        pgmoneta_testkit::browser_binaries(),
        "chromium and chromedriver (Debian's chromium and chromium-driver; scripts/setup.sh installs them)",
        "the web console's browser test",
    ) else {
        return;
    };
    let source = cluster();
    source.pgbench_init(2).unwrap();
    let port = free_port();
    let mut d = Daemon::new(&source, &format!("console = {port}"));
    // A sample a second, so that the charts have lines within the test.
    d.env.push(("PGMONETA_HISTORY_INTERVAL".into(), "1".into()));
    d.start();
    d.wait_streaming();
    d.ok(&["backup", "primary"]);
    source.pgbench_run(2, 200).unwrap();
    for f in pgmoneta_storage::sqlbackup::required_functions(source.version()) {
        source.execute(&format!("GRANT EXECUTE ON FUNCTION {f} TO \"{}\"", source.replication_user())).unwrap();
    }
    let first = labels(&d)[0].clone();
    d.ok(&["backup", "primary", &first]);
    let shots = screenshots();
    let base = format!("http://127.0.0.1:{port}");
    let b = Browser::start(1366, 860).unwrap();

    // The overview: the server, its health, the metrics of the first category.
    b.goto(&format!("{base}/")).unwrap();
    assert_eq!(b.title().unwrap(), "Overview · pgmoneta");
    let row = b.text(&b.find("main table tbody tr").unwrap()).unwrap();
    assert!(row.starts_with("primary") && row.contains("streaming"), "{row}");
    b.screenshot(&shots.join("overview.png")).unwrap();
    // The explorer applies its controls as they change (the script), and reads without it.
    b.execute("const s = document.querySelector('select[name=view]'); s.value = 'advanced'; s.dispatchEvent(new Event('change'));", json!([]))
        .unwrap();
    b.wait_until("the advanced view", Duration::from_secs(10), |b| {
        b.url().unwrap_or_default().contains("view=advanced")
    })
    .unwrap();
    assert!(b.text(&b.find("table.metrics thead").unwrap()).unwrap().contains("Labels"));
    // The theme toggle, kept in the browser.
    b.click(&b.find("[data-theme-toggle]").unwrap()).unwrap();
    let theme = b
        .execute(
            "return [document.documentElement.getAttribute('data-theme'), localStorage.getItem('theme')];",
            json!([]),
        )
        .unwrap();
    assert_eq!(theme[0], theme[1]);
    b.goto(&format!("{base}/?category=backup")).unwrap();
    b.screenshot(&shots.join(format!("overview-{}.png", theme[0].as_str().unwrap_or("theme")))).unwrap();
    b.click(&b.find("[data-theme-toggle]").unwrap()).unwrap();

    // The server's page lists the backups list-backup lists.
    b.goto(&format!("{base}/server/primary")).unwrap();
    let shown: Vec<String> =
        b.find_all("table.backups tbody tr td:first-child code").unwrap().iter().map(|e| b.text(e).unwrap()).collect();
    let mut listed = labels(&d);
    listed.reverse();
    assert_eq!(shown, listed, "the page's backups are list-backup's, newest first");
    let kinds = b.text(&b.find("table.backups tbody").unwrap()).unwrap();
    assert!(kinds.contains(&format!("incremental of {first}")), "{kinds}");
    assert_eq!(b.find_all("svg.chart").unwrap().len(), 4);
    assert!(b.find_all("svg.chart path.line.lag").unwrap().len() == 1, "the WAL lag chart has its line");
    b.screenshot(&shots.join("server.png")).unwrap();

    // A wrong password is refused; the right one logs in.
    b.click(&b.find("a[href='/login']").unwrap()).unwrap();
    wait_text(&b, "h1", "Log in");
    b.type_text(&b.find("input[name=user]").unwrap(), "admin").unwrap();
    b.type_text(&b.find("input[name=password]").unwrap(), "not the password").unwrap();
    b.click(&b.find("form.stack button[type=submit]").unwrap()).unwrap();
    wait_text(&b, ".notice.error", "Wrong user name or password");
    b.screenshot(&shots.join("login-refused.png")).unwrap();
    b.type_text(&b.find("input[name=user]").unwrap(), "admin").unwrap();
    b.type_text(&b.find("input[name=password]").unwrap(), ADMIN_PASSWORD).unwrap();
    b.click(&b.find("form.stack button[type=submit]").unwrap()).unwrap();
    wait_text(&b, ".who", "admin");

    // A backup from the page completes and appears.
    b.goto(&format!("{base}/server/primary")).unwrap();
    b.click(&b.find("section.actions form button.primary").unwrap()).unwrap();
    wait_text(&b, ".notice", "Started: full backup");
    d.wait_for("the backup started from the page", || labels(&d).len() == 3);
    b.wait_until("the backup on the page", Duration::from_secs(60), |b| {
        let _ = b.goto(&format!("{base}/server/primary"));
        b.find_all("table.backups tbody tr").map(|r| r.len() == 3).unwrap_or(false)
            && b.source().map(|s| s.contains("badge ok\">done")).unwrap_or(false)
    })
    .unwrap();
    b.screenshot(&shots.join("server-after-backup.png")).unwrap();

    // A forged action (a form without the token, as another page could post) is refused.
    b.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/server/primary/backup'; \
         document.body.appendChild(f); f.submit();",
        json!([]),
    )
    .unwrap();
    b.wait_until("the refusal", Duration::from_secs(10), |b| {
        b.source().map(|s| s.contains("Refused")).unwrap_or(false)
    })
    .unwrap();
    b.screenshot(&shots.join("forged-refused.png")).unwrap();
    assert_eq!(labels(&d).len(), 3, "the forged action did not run");

    // Delete asks for confirmation, then removes the newest backup.
    b.goto(&format!("{base}/server/primary")).unwrap();
    let newest = labels(&d).pop().unwrap();
    b.execute("document.querySelector('table.backups tbody tr details').open = true;", json!([])).unwrap();
    b.click(&b.find("table.backups tbody tr details input[name=confirm]").unwrap()).unwrap();
    b.click(&b.find("table.backups tbody tr details button.danger").unwrap()).unwrap();
    b.accept_dialog().unwrap();
    d.wait_for("the delete from the page", || !labels(&d).contains(&newest));
    b.screenshot(&shots.join("server-after-delete.png")).unwrap();
}

/// Sends `request` over TLS (trusting `ca`) and returns what came back.
fn tls_exchange(port: u16, ca: &std::path::Path, request: &str) -> String {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    b.set_ca_file(ca).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = b.build().connect("localhost", tcp).unwrap();
    tls.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn the_console_and_nagios_over_https() {
    let source = cluster();
    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let (cert, key, ca_file) = crate::localhost_certs(certs.path());
    let (port, nagios) = (free_port(), free_port());
    let extra = format!(
        "console = {port}\nnagios = {nagios}\nmetrics_cert_file = {}\nmetrics_key_file = {}\n",
        cert.display(),
        key.display()
    );
    let mut d = Daemon::new(&source, &extra);
    d.start();

    let page = tls_exchange(port, &ca_file, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<h2>Servers</h2>"), "{page}");
    assert!(!page.contains("This connection is not encrypted"));
    let form = format!("user=admin&password={ADMIN_PASSWORD}");
    let login = tls_exchange(
        port,
        &ca_file,
        &format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    let cookie = login.lines().find(|l| l.starts_with("Set-Cookie:")).unwrap_or_default();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{login}"
    );
    assert!(!d.log_text().contains("console: served over plain HTTP"));

    // Nagios over TLS, asked over HTTP and not asked at all.
    let line = tls_exchange(nagios, &ca_file, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(line.starts_with("HTTP/1.1 200") && line.contains("PGMONETA "), "{line}");
    let unasked = tls_exchange(nagios, &ca_file, "");
    assert!(unasked.split_once("\r\n").is_some_and(|(_, rest)| rest.starts_with("PGMONETA ")), "{unasked:?}");
}

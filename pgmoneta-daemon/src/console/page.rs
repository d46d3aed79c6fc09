//! HTML for the console: escaping, the layout every page shares, and small pieces.

use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is looking: the logged-in admin and the session's CSRF token.
pub struct Viewer<'a> {
    /// The admin's name.
    pub user: &'a str,
    /// The token every form carries.
    pub csrf: &'a str,
}

/// What the layout needs besides the page's own content.
pub struct Frame<'a> {
    /// The page's title (after "pgmoneta").
    pub title: &'a str,
    /// Whether the daemon runs (always, when it answers) and its version.
    pub version: &'a str,
    /// When the page was made, local time.
    pub updated: String,
    /// The servers, for the navigation.
    pub servers: &'a [String],
    /// The server whose page this is; `None` on the overview (`Some("")` on other pages).
    pub current: Option<&'a str>,
    /// The logged-in admin, if any.
    pub viewer: Option<Viewer<'a>>,
    /// Whether logging in is possible (actions enabled and an admins vault).
    pub login: bool,
    /// Served over TLS.
    pub tls: bool,
    /// A message to show once (after an action).
    pub notice: Option<&'a str>,
}

/// A hidden CSRF field.
pub fn csrf_field(viewer: &Viewer<'_>) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(viewer.csrf))
}

/// The whole document around `body`.
pub fn layout(f: &Frame<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · pgmoneta</title>\n<link rel=\"stylesheet\" href=\"/console.css\">\n\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n\
         <script src=\"/console.js\" defer></script>\n</head>\n<body>\n<header class=\"top\">\n\
         <a class=\"brand\" href=\"/\"><span class=\"logo\" aria-hidden=\"true\"></span>pgmoneta</a>\n\
         <span class=\"service\"><span class=\"badge ok\">Running</span> Version {version} · Updated \
         <time>{updated}</time></span>\n<nav aria-label=\"Servers\">",
        title = esc(f.title),
        version = esc(f.version),
        updated = esc(&f.updated),
    );
    let _ =
        write!(out, "<a href=\"/\"{}>Overview</a>", if f.current.is_none() { " aria-current=\"page\"" } else { "" });
    for s in f.servers {
        let current = if f.current == Some(s.as_str()) { " aria-current=\"page\"" } else { "" };
        let _ = write!(out, "<a href=\"/server/{}\"{current}>{}</a>", url(s), esc(s));
    }
    out.push_str("</nav>\n<div class=\"tools\">");
    out.push_str(
        "<button type=\"button\" class=\"ghost js-only\" data-refresh>Refresh</button>\
         <select class=\"js-only\" data-autorefresh aria-label=\"Refresh every\">\
         <option value=\"0\">Auto-refresh off</option><option value=\"10\">every 10 s</option>\
         <option value=\"30\">every 30 s</option><option value=\"60\">every minute</option>\
         <option value=\"300\">every 5 min</option></select>\
         <button type=\"button\" class=\"ghost js-only\" data-theme-toggle aria-label=\"Switch theme\">Theme</button>",
    );
    match &f.viewer {
        Some(v) => {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/logout\" class=\"inline\">{}<span class=\"who\">{}</span>\
                 <button type=\"submit\" class=\"ghost\">Log out</button></form>",
                csrf_field(v),
                esc(v.user)
            );
        }
        None if f.login => out.push_str("<a class=\"button ghost\" href=\"/login\">Log in</a>"),
        None => {}
    }
    out.push_str("</div>\n</header>\n<main>\n");
    if let Some(n) = f.notice {
        let _ = writeln!(out, "<p class=\"notice\" role=\"status\">{}</p>", esc(n));
    }
    if f.viewer.is_some() && !f.tls {
        out.push_str(
            "<p class=\"notice warn\">This connection is not encrypted: set <code>metrics_cert_file</code> and \
             <code>metrics_key_file</code> to serve the console over HTTPS.</p>\n",
        );
    }
    out.push_str(body);
    out.push_str("\n</main>\n</body>\n</html>\n");
    out
}

/// A state badge: `ok`, `warning`, `critical`, `unknown`.
pub fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {}\">{}</span>", esc(class), esc(text))
}

/// A definition card: a title and rows of term and value (values are HTML).
pub fn card(title: &str, rows: &[(&str, String)]) -> String {
    let mut out = format!("<section class=\"card\"><h3>{}</h3><dl>", esc(title));
    for (k, v) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    out.push_str("</dl></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_urls() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(url("prim ary/ü"), "prim%20ary%2F%C3%BC");
    }

    #[test]
    fn the_layout_marks_the_current_page_and_offers_login() {
        let servers = vec!["primary".to_owned(), "b<c".to_owned()];
        let f = Frame {
            title: "Overview",
            version: "0.1.0",
            updated: "2026-12-07 10:00:00".to_owned(),
            servers: &servers,
            current: Some("primary"),
            viewer: None,
            login: true,
            tls: false,
            notice: Some("done <ok>"),
        };
        let html = layout(&f, "<p>body</p>");
        assert!(html.contains("<a href=\"/server/primary\" aria-current=\"page\">primary</a>"));
        assert!(html.contains("<a href=\"/server/b%3Cc\">b&lt;c</a>"));
        assert!(html.contains("href=\"/login\"") && html.contains("done &lt;ok&gt;"));
        assert!(!html.contains("style="), "no inline styles: the CSP forbids them");
    }
}

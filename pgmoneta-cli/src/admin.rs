//! `pgmoneta-admin`: creates the master key (`~/.pgmoneta/master.key`) and manages the users
//! and admins vaults (`pgmoneta_users.conf`, `pgmoneta_admins.conf`), as upstream pgmoneta's
//! tool of the same name does.
//!
//! The binary only parses its arguments into [`Options`] and a [`Command`] and calls
//! [`execute`]; everything else, prompting included (through the [`Input`] trait), is here.
//!
//! ```no_run
//! use pgmoneta_cli::admin::{execute, Command, Options, StdinInput};
//!
//! let options = Options { file: Some("/etc/pgmoneta/pgmoneta_users.conf".into()), ..Options::default() };
//! let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
//! let status = execute(Command::UserList, &options, &mut StdinInput::new(), &mut out, &mut err);
//! std::process::exit(status);
//! ```

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};
use pgmoneta_crypto::{
    MasterKey, MasterKeyFile, Vault, VaultKind, MAX_KEY_BYTES, MAX_PASSWORD, MAX_USERNAME, MIN_KEY_CHARS,
};

/// The environment variable that must be `1` for the tool to run as root.
pub const ALLOW_ROOT_ENV: &str = "PGMONETA_ALLOW_ROOT";
/// The environment variable that supplies the password or master key without a prompt.
pub const PASSWORD_ENV: &str = "PGMONETA_PASSWORD";
/// Default length of a generated password (`-l`).
pub const DEFAULT_LENGTH: usize = 64;
/// Longest generated password (`-l`).
pub const MAX_LENGTH: usize = 1024;
/// How many times an interactive operator may retype a password that did not match its
/// verification.
pub const PROMPT_ATTEMPTS: usize = 3;

/// The characters of generated passwords: printable ASCII without the space, quotes, backslash,
/// backquote and `:`, so that a password can be pasted into a shell, a `.pgpass` line or a
/// connection string without quoting.
pub const PASSWORD_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./;<=>?@[]^_{|}~";

/// Output format (`-F`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain lines.
    #[default]
    Text,
    /// One JSON document with an `Outcome` and, on success, a `Response`.
    Json,
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `master-key`: create `~/.pgmoneta/master.key`.
    MasterKey,
    /// `user add`: add a user to the vault.
    UserAdd,
    /// `user edit`: replace the password of a user.
    UserEdit,
    /// `user del`: remove a user.
    UserDel,
    /// `user ls`: list the users.
    UserList,
}

impl Command {
    /// The command as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Command::MasterKey => "master-key",
            Command::UserAdd => "user add",
            Command::UserEdit => "user edit",
            Command::UserDel => "user del",
            Command::UserList => "user ls",
        }
    }
}

/// The options of a run. `Debug` hides the passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Options {
    /// The vault file (`-f`); required by the `user` commands.
    pub file: Option<PathBuf>,
    /// The user (`-U`); prompted for when missing.
    pub user: Option<String>,
    /// The password or master key (`-P`).
    pub password: Option<String>,
    /// The password or master key from [`PASSWORD_ENV`], used when neither `-P` nor `-g` is
    /// given.
    pub env_password: Option<String>,
    /// Generate the password (`-g`).
    pub generate: bool,
    /// Length of a generated password (`-l`), 1 to [`MAX_LENGTH`].
    pub length: usize,
    /// Output format (`-F`).
    pub format: Format,
    /// The master key file; `None` for `$HOME/.pgmoneta/master.key`.
    pub master_key: Option<PathBuf>,
    /// Whether running as root is allowed ([`ALLOW_ROOT_ENV`] is `1`).
    pub allow_root: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            file: None,
            user: None,
            password: None,
            env_password: None,
            generate: false,
            length: DEFAULT_LENGTH,
            format: Format::Text,
            master_key: None,
            allow_root: false,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |p: &Option<String>| p.as_ref().map(|_| "********");
        f.debug_struct("Options")
            .field("file", &self.file)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("env_password", &hidden(&self.env_password))
            .field("generate", &self.generate)
            .field("length", &self.length)
            .field("format", &self.format)
            .field("master_key", &self.master_key)
            .field("allow_root", &self.allow_root)
            .finish()
    }
}

/// Whether the value of [`ALLOW_ROOT_ENV`] allows running as root: only `1` does.
pub fn root_allowed(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| v == "1")
}

/// Where the operator's answers come from.
pub trait Input {
    /// Reads a line (a user name), showing `prompt` when interactive; without the line end.
    ///
    /// # Errors
    /// I/O, or the end of the input.
    fn line(&mut self, prompt: &str) -> io::Result<String>;
    /// Reads a secret without echoing it when interactive; without the line end.
    ///
    /// # Errors
    /// I/O, or the end of the input.
    fn secret(&mut self, prompt: &str) -> io::Result<String>;
    /// Whether an operator is typing: secrets are then asked twice.
    fn is_interactive(&self) -> bool;
    /// Tells an interactive operator something (a retry).
    fn notice(&mut self, message: &str);
}

/// The process's standard input: prompts on standard error and reads without echo when it is a
/// terminal, reads plain lines (no prompts, no verification) otherwise.
#[derive(Debug)]
pub struct StdinInput {
    terminal: bool,
}

impl StdinInput {
    /// Standard input, checking once whether it is a terminal.
    pub fn new() -> StdinInput {
        StdinInput { terminal: io::stdin().is_terminal() }
    }

    fn read(&mut self, prompt: &str, hide: bool) -> io::Result<String> {
        if self.terminal {
            let mut err = io::stderr().lock();
            write!(err, "{prompt}")?;
            err.flush()?;
        }
        let _echo = if self.terminal && hide { Some(EchoOff::new()?) } else { None };
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"));
        }
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        Ok(line)
    }
}

impl Default for StdinInput {
    fn default() -> StdinInput {
        StdinInput::new()
    }
}

impl Input for StdinInput {
    fn line(&mut self, prompt: &str) -> io::Result<String> {
        self.read(prompt, false)
    }

    fn secret(&mut self, prompt: &str) -> io::Result<String> {
        self.read(prompt, true)
    }

    fn is_interactive(&self) -> bool {
        self.terminal
    }

    fn notice(&mut self, message: &str) {
        if self.terminal {
            eprintln!("{message}");
        }
    }
}

/// Terminal echo switched off (the newline still echoes) until dropped.
struct EchoOff {
    saved: Termios,
}

impl EchoOff {
    fn new() -> io::Result<EchoOff> {
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).map_err(io::Error::from)?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(io::Error::from)?;
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// A random password of `length` characters from [`PASSWORD_ALPHABET`], each drawn uniformly
/// from OpenSSL's random generator.
///
/// # Errors
/// A length outside 1 to [`MAX_LENGTH`], or OpenSSL failing.
pub fn generate_password(length: usize) -> anyhow::Result<String> {
    if !(1..=MAX_LENGTH).contains(&length) {
        bail!("the password length must be 1 to {MAX_LENGTH}, not {length}");
    }
    let n = PASSWORD_ALPHABET.len();
    // Bytes at or above the largest multiple of the alphabet's size would favour its first
    // characters: they are drawn again.
    let limit = 256 - 256 % n;
    let mut password = String::with_capacity(length);
    let mut buf = [0u8; 256];
    while password.len() < length {
        openssl::rand::rand_bytes(&mut buf).context("generating a password")?;
        for &b in buf.iter().filter(|&&b| usize::from(b) < limit) {
            if password.len() == length {
                break;
            }
            password.push(char::from(PASSWORD_ALPHABET[usize::from(b) % n]));
        }
    }
    Ok(password)
}

/// Which vault a file is, from its name: one whose name contains `admins`
/// (`pgmoneta_admins.conf`) holds administrators (at most 8), any other users (at most 64).
pub fn vault_kind(path: &Path) -> VaultKind {
    let admins = path.file_name().is_some_and(|n| n.to_string_lossy().contains("admins"));
    if admins {
        VaultKind::Admins
    } else {
        VaultKind::Users
    }
}

/// Runs `command` and reports: the result on `out` (text or JSON), a one-line error on `err`
/// (and, with JSON, a document whose `Outcome.Status` is false on `out`).
///
/// Returns the exit status: 0 on success, 1 on failure.
pub fn execute(
    command: Command,
    options: &Options,
    input: &mut dyn Input,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    match run(command, options, input) {
        Ok(report) => match write_report(command, options, &report, out) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(err, "pgmoneta-admin: writing the output: {e}");
                1
            }
        },
        Err(e) => {
            let message = format!("{e:#}");
            if options.format == Format::Json {
                let doc = serde_json::json!({
                    "Outcome": { "Status": false, "Command": command.name(), "Error": message },
                });
                let _ = writeln!(out, "{doc:#}");
            }
            let _ = writeln!(err, "pgmoneta-admin: {message}");
            1
        }
    }
}

/// What a successful command reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The master key file was created.
    MasterKey {
        /// Its path.
        path: PathBuf,
    },
    /// A user was added or its password changed.
    User {
        /// The user.
        user: String,
        /// The password, when it was generated (so that the operator can see it).
        generated: Option<String>,
    },
    /// A user was removed.
    Removed {
        /// The user.
        user: String,
    },
    /// The users of the vault, in file order.
    Users(Vec<String>),
}

fn write_report(command: Command, options: &Options, report: &Report, out: &mut dyn Write) -> io::Result<()> {
    match options.format {
        Format::Text => match report {
            Report::User { generated: Some(password), .. } => writeln!(out, "Password : {password}"),
            Report::Users(users) => users.iter().try_for_each(|u| writeln!(out, "{u}")),
            Report::MasterKey { .. } | Report::User { generated: None, .. } | Report::Removed { .. } => Ok(()),
        },
        Format::Json => {
            let response = match report {
                Report::MasterKey { path } => serde_json::json!({ "MasterKey": path.display().to_string() }),
                Report::User { user, generated: Some(password) } => {
                    serde_json::json!({ "User": user, "Password": password })
                }
                Report::User { user, generated: None } | Report::Removed { user } => {
                    serde_json::json!({ "User": user })
                }
                Report::Users(users) => serde_json::json!({ "Users": users }),
            };
            let doc = serde_json::json!({
                "Outcome": { "Status": true, "Command": command.name() },
                "Response": response,
            });
            writeln!(out, "{doc:#}")
        }
    }
}

/// Runs `command`, asking `input` for what the options do not give.
///
/// # Errors
/// Running as root without [`Options::allow_root`], a missing `-f`, vault or master key, a user
/// that exists (add) or does not (edit, del), a full vault, a master key that does not decrypt
/// the vault, an invalid name or password, I/O.
pub fn run(command: Command, options: &Options, input: &mut dyn Input) -> anyhow::Result<Report> {
    if !options.allow_root && nix::unistd::geteuid().is_root() {
        bail!("refusing to run as root: run as the pgmoneta user, or set {ALLOW_ROOT_ENV}=1");
    }
    match command {
        Command::MasterKey => create_master_key(options, input),
        Command::UserAdd => add_user(options, input),
        Command::UserEdit => edit_user(options, input),
        Command::UserDel => {
            let (path, mut vault) = load_vault(options)?;
            let user = user_name(options, input)?;
            if !vault.users().contains(&user.as_str()) {
                bail!("user {user:?} does not exist in {}", path.display());
            }
            vault.remove(&user)?;
            vault.save(&path)?;
            Ok(Report::Removed { user })
        }
        Command::UserList => {
            let (_, vault) = load_vault(options)?;
            Ok(Report::Users(vault.users().into_iter().map(str::to_owned).collect()))
        }
    }
}

fn master_key_file(options: &Options) -> anyhow::Result<MasterKeyFile> {
    Ok(match &options.master_key {
        Some(path) => MasterKeyFile::new(path),
        None => MasterKeyFile::default_location()?,
    })
}

fn create_master_key(options: &Options, input: &mut dyn Input) -> anyhow::Result<Report> {
    let file = master_key_file(options)?;
    if file.path().exists() {
        bail!(
            "the master key {} already exists; remove it first if you really mean to replace it \
             (what was encrypted with it could no longer be read)",
            file.path().display()
        );
    }
    let (key, _) = secret(options, input, Secret::MasterKey)?;
    file.create(&key)?;
    Ok(Report::MasterKey { path: file.path().to_owned() })
}

fn load_master_key(options: &Options) -> anyhow::Result<(PathBuf, MasterKey)> {
    let file = master_key_file(options)?;
    let path = file.path().to_owned();
    if !path.exists() {
        bail!("no master key at {}: create one with `pgmoneta-admin master-key`", path.display());
    }
    let key = file.load().with_context(|| format!("loading the master key {}", path.display()))?;
    Ok((path, key))
}

/// Checks that every entry but `except`'s decrypts with `master`, so that a vault never mixes
/// entries sealed with different keys.
fn check_master_key(
    vault: &Vault,
    master: &MasterKey,
    key_path: &Path,
    path: &Path,
    except: &str,
) -> anyhow::Result<()> {
    for user in vault.users().into_iter().filter(|&u| u != except) {
        vault
            .password(master, user)
            .with_context(|| format!("the master key {} does not open {}", key_path.display(), path.display()))?;
    }
    Ok(())
}

fn vault_path(options: &Options) -> anyhow::Result<&Path> {
    options.file.as_deref().context("the user commands need the vault file: -f FILE")
}

fn load_vault(options: &Options) -> anyhow::Result<(PathBuf, Vault)> {
    let path = vault_path(options)?;
    if !path.exists() {
        bail!("the vault {} does not exist", path.display());
    }
    Ok((path.to_owned(), Vault::load(path, vault_kind(path))?))
}

fn user_name(options: &Options, input: &mut dyn Input) -> anyhow::Result<String> {
    let user = match &options.user {
        Some(user) => user.clone(),
        None => input.line("User name: ").context("reading the user name")?.trim().to_owned(),
    };
    if user.is_empty() || user.len() > MAX_USERNAME || user.contains(':') || user.contains(char::is_whitespace) {
        bail!("invalid user name {user:?}: 1 to {MAX_USERNAME} bytes, no ':' and no spaces");
    }
    Ok(user)
}

fn add_user(options: &Options, input: &mut dyn Input) -> anyhow::Result<Report> {
    let path = vault_path(options)?.to_owned();
    let kind = vault_kind(&path);
    let mut vault = if path.exists() { Vault::load(&path, kind)? } else { Vault::new(kind) };
    let user = user_name(options, input)?;
    if vault.users().contains(&user.as_str()) {
        bail!("user {user:?} already exists in {}", path.display());
    }
    if vault.users().len() >= kind.max_entries() {
        bail!("the vault {} is full: it holds at most {} users", path.display(), kind.max_entries());
    }
    let (key_path, master) = load_master_key(options)?;
    check_master_key(&vault, &master, &key_path, &path, "")?;
    let (password, generated) = secret(options, input, Secret::Password)?;
    vault.add(&master, &user, &password)?;
    vault.save(&path)?;
    Ok(Report::User { user, generated: generated.then_some(password) })
}

fn edit_user(options: &Options, input: &mut dyn Input) -> anyhow::Result<Report> {
    let (path, mut vault) = load_vault(options)?;
    let user = user_name(options, input)?;
    if !vault.users().contains(&user.as_str()) {
        bail!("user {user:?} does not exist in {}", path.display());
    }
    let (key_path, master) = load_master_key(options)?;
    check_master_key(&vault, &master, &key_path, &path, &user)?;
    let (password, generated) = secret(options, input, Secret::Password)?;
    vault.set_password(&master, &user, &password)?;
    vault.save(&path)?;
    Ok(Report::User { user, generated: generated.then_some(password) })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Password,
    MasterKey,
}

impl Secret {
    fn what(self) -> &'static str {
        match self {
            Secret::Password => "password",
            Secret::MasterKey => "master key",
        }
    }

    fn check(self, text: &str) -> anyhow::Result<()> {
        match self {
            Secret::Password if text.is_empty() || text.len() > MAX_PASSWORD => {
                bail!("a password must have 1 to {MAX_PASSWORD} bytes")
            }
            Secret::MasterKey if text.chars().count() < MIN_KEY_CHARS || text.len() > MAX_KEY_BYTES => {
                bail!("a master key must have at least {MIN_KEY_CHARS} characters and at most {MAX_KEY_BYTES} bytes")
            }
            _ => Ok(()),
        }
    }
}

/// The password or key: `-P`, else generated (`-g`), else the environment, else asked (twice
/// when interactive). Also whether it was generated.
fn secret(options: &Options, input: &mut dyn Input, kind: Secret) -> anyhow::Result<(String, bool)> {
    let (text, generated) = if let Some(given) = &options.password {
        (given.clone(), false)
    } else if options.generate {
        (generate_password(options.length)?, true)
    } else if let Some(given) = &options.env_password {
        (given.clone(), false)
    } else {
        (ask(input, kind)?, false)
    };
    kind.check(&text)?;
    Ok((text, generated))
}

fn ask(input: &mut dyn Input, kind: Secret) -> anyhow::Result<String> {
    let what = kind.what();
    let prompt = match kind {
        Secret::Password => "Password: ",
        Secret::MasterKey => "Master key: ",
    };
    let reading = || format!("reading the {what}");
    if !input.is_interactive() {
        return input.secret(prompt).with_context(reading);
    }
    for attempt in 1..=PROMPT_ATTEMPTS {
        let first = input.secret(prompt).with_context(reading)?;
        kind.check(&first)?;
        let again = input.secret("Verify: ").with_context(reading)?;
        if first == again {
            return Ok(first);
        }
        if attempt < PROMPT_ATTEMPTS {
            input.notice(&format!("The two {what}s differ, try again."));
        }
    }
    bail!("the {what} and its verification differed {PROMPT_ATTEMPTS} times")
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    struct Script {
        answers: VecDeque<&'static str>,
        interactive: bool,
        notices: Vec<String>,
    }

    impl Script {
        fn new(interactive: bool, answers: &[&'static str]) -> Script {
            Script { answers: answers.iter().copied().collect(), interactive, notices: Vec::new() }
        }

        fn next(&mut self) -> io::Result<String> {
            self.answers
                .pop_front()
                .map(str::to_owned)
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"))
        }
    }

    impl Input for Script {
        fn line(&mut self, _: &str) -> io::Result<String> {
            self.next()
        }
        fn secret(&mut self, _: &str) -> io::Result<String> {
            self.next()
        }
        fn is_interactive(&self) -> bool {
            self.interactive
        }
        fn notice(&mut self, message: &str) {
            self.notices.push(message.to_owned());
        }
    }

    #[test]
    fn generated_passwords_have_the_length_and_alphabet() {
        for length in [1, 20, 64, MAX_LENGTH] {
            let p = generate_password(length).unwrap();
            assert_eq!(p.len(), length);
            assert!(p.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)), "{p}");
        }
        assert_ne!(generate_password(64).unwrap(), generate_password(64).unwrap());
        assert!(generate_password(0).is_err());
        assert!(generate_password(MAX_LENGTH + 1).is_err());
        assert!(!PASSWORD_ALPHABET.iter().any(|b| b" :'\"\\`".contains(b)));
    }

    #[test]
    fn the_vault_kind_follows_the_file_name() {
        assert_eq!(vault_kind(Path::new("/etc/pgmoneta/pgmoneta_admins.conf")), VaultKind::Admins);
        assert_eq!(vault_kind(Path::new("/etc/pgmoneta/pgmoneta_users.conf")), VaultKind::Users);
        assert_eq!(vault_kind(Path::new("/etc/admins/users.conf")), VaultKind::Users);
    }

    #[test]
    fn debug_hides_the_passwords() {
        let options =
            Options { password: Some("hunter2".into()), env_password: Some("s3cret".into()), ..Options::default() };
        let text = format!("{options:?}");
        assert!(!text.contains("hunter2") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn only_one_allows_root() {
        assert!(root_allowed(Some("1".as_ref())));
        assert!(!root_allowed(Some("0".as_ref())));
        assert!(!root_allowed(Some("yes".as_ref())));
        assert!(!root_allowed(None));
    }

    #[test]
    fn interactive_secrets_are_verified_and_retried() {
        let mut input = Script::new(true, &["one", "two", "three", "three"]);
        assert_eq!(ask(&mut input, Secret::Password).unwrap(), "three");
        assert_eq!(input.notices.len(), 1);

        let mut input = Script::new(true, &["a", "b", "c", "d", "e", "f"]);
        let err = ask(&mut input, Secret::Password).unwrap_err().to_string();
        assert!(err.contains("differed 3 times"), "{err}");

        let mut input = Script::new(true, &["short"]);
        let err = ask(&mut input, Secret::MasterKey).unwrap_err().to_string();
        assert!(err.contains("at least 8 characters"), "{err}");

        let mut input = Script::new(false, &["piped"]);
        assert_eq!(ask(&mut input, Secret::Password).unwrap(), "piped");
        let err = format!("{:#}", ask(&mut input, Secret::Password).unwrap_err());
        assert!(err.contains("reading the password: end of input"), "{err}");
    }

    #[test]
    fn the_password_comes_from_the_option_then_generation_then_the_environment() {
        let mut input = Script::new(false, &["typed"]);
        let mut options = Options {
            password: Some("option".into()),
            env_password: Some("environment".into()),
            generate: false,
            length: 12,
            ..Options::default()
        };
        assert_eq!(secret(&options, &mut input, Secret::Password).unwrap(), ("option".into(), false));
        options.password = None;
        assert_eq!(secret(&options, &mut input, Secret::Password).unwrap(), ("environment".into(), false));
        options.generate = true;
        let (generated, was_generated) = secret(&options, &mut input, Secret::Password).unwrap();
        assert!(was_generated);
        assert_eq!(generated.len(), 12);
        options.generate = false;
        options.env_password = None;
        assert_eq!(secret(&options, &mut input, Secret::Password).unwrap(), ("typed".into(), false));
        options.password = Some(String::new());
        assert!(secret(&options, &mut input, Secret::Password).is_err());
    }

    #[test]
    fn json_reports_have_an_outcome_and_a_response() {
        let options = Options { format: Format::Json, ..Options::default() };
        let mut out = Vec::new();
        let report = Report::Users(vec!["a".into(), "b".into()]);
        write_report(Command::UserList, &options, &report, &mut out).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["Outcome"]["Status"], true);
        assert_eq!(doc["Response"]["Users"], serde_json::json!(["a", "b"]));
    }
}

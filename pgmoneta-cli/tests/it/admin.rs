//! `pgmoneta-admin` as operators run it: the built binary, a temporary `HOME` per test, and the
//! vault and master key checked with the crypto library.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pgmoneta_crypto::{MasterKey, MasterKeyFile, Vault, VaultKind};

/// A `HOME` of its own, and the vault path inside it.
struct Home {
    dir: tempfile::TempDir,
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn finish(output: Output) -> Run {
    Run {
        ok: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

impl Home {
    fn new() -> Home {
        Home { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn vault(&self) -> PathBuf {
        self.path().join("pgmoneta_users.conf")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgmoneta-admin"));
        cmd.args(args)
            .env("HOME", self.path())
            .env("PGMONETA_ALLOW_ROOT", "1")
            .env_remove("PGMONETA_PASSWORD")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        finish(self.command(args).output().unwrap())
    }

    /// Runs with `-f` set to the vault.
    fn user(&self, args: &[&str]) -> Run {
        let vault = self.vault();
        let mut all = vec!["-f", vault.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn with_master_key(self) -> Home {
        let run = self.run(&["master-key", "-P", "the master key of the test"]);
        assert!(run.ok, "{}", run.stderr);
        self
    }

    fn master_key(&self) -> MasterKey {
        MasterKeyFile::new(self.path().join(".pgmoneta/master.key")).load().unwrap()
    }

    fn password(&self, user: &str) -> Option<String> {
        Vault::load(&self.vault(), VaultKind::Users).unwrap().password(&self.master_key(), user).unwrap()
    }

    fn users(&self) -> Vec<String> {
        Vault::load(&self.vault(), VaultKind::Users).unwrap().users().into_iter().map(str::to_owned).collect()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn admin_master_key_is_created_once_owner_only() {
    let home = Home::new();
    let short = home.run(&["master-key", "-P", "seven77"]);
    assert!(!short.ok);
    assert!(short.stderr.contains("at least 8 characters"), "{}", short.stderr);
    assert!(!home.path().join(".pgmoneta/master.key").exists());

    let home = home.with_master_key();
    assert_eq!(mode(&home.path().join(".pgmoneta")), 0o700);
    assert_eq!(mode(&home.path().join(".pgmoneta/master.key")), 0o600);
    let before = std::fs::read(home.path().join(".pgmoneta/master.key")).unwrap();

    let again = home.run(&["master-key", "-P", "another master key"]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(again.stderr.lines().count(), 1, "{}", again.stderr);
    assert_eq!(std::fs::read(home.path().join(".pgmoneta/master.key")).unwrap(), before);

    // From the environment, and generated.
    let home = Home::new();
    let run = finish(home.command(&["master-key"]).env("PGMONETA_PASSWORD", "from the environment").output().unwrap());
    assert!(run.ok, "{}", run.stderr);
    let (key, _) = MasterKeyFile::new(home.path().join(".pgmoneta/master.key")).read().unwrap();
    assert_eq!(key, b"from the environment");
    let home = Home::new();
    assert!(home.run(&["master-key", "-g", "-l", "32"]).ok);
    let (key, _) = MasterKeyFile::new(home.path().join(".pgmoneta/master.key")).read().unwrap();
    assert_eq!(key.len(), 32);
}

#[test]
fn admin_users_are_added_listed_and_decrypt() {
    let home = Home::new().with_master_key();
    let run = home.user(&["-U", "alice", "-P", "alice's secret", "user", "add"]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(mode(&home.vault()), 0o600);
    assert_eq!(home.password("alice").as_deref(), Some("alice's secret"));

    // Options after the command work too; the environment supplies the password.
    let run = finish(
        home.command(&["user", "add", "-f", home.vault().to_str().unwrap(), "-U", "bob"])
            .env("PGMONETA_PASSWORD", "bob from env")
            .output()
            .unwrap(),
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(home.password("bob").as_deref(), Some("bob from env"));

    // -P wins over the environment.
    let run = finish(
        home.command(&["-f", home.vault().to_str().unwrap(), "-U", "carol", "-P", "carol option", "user", "add"])
            .env("PGMONETA_PASSWORD", "carol env")
            .output()
            .unwrap(),
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(home.password("carol").as_deref(), Some("carol option"));

    let ls = home.user(&["user", "ls"]);
    assert!(ls.ok, "{}", ls.stderr);
    assert_eq!(ls.stdout, "alice\nbob\ncarol\n");

    let json = home.user(&["-F", "json", "user", "ls"]);
    assert!(json.ok, "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["Outcome"]["Status"], true);
    assert_eq!(doc["Response"]["Users"], serde_json::json!(["alice", "bob", "carol"]));
}

#[test]
fn admin_generated_passwords_are_printed_and_stored() {
    let home = Home::new().with_master_key();
    let run = home.user(&["-U", "gen", "-g", "-l", "20", "user", "add"]);
    assert!(run.ok, "{}", run.stderr);
    let password = run.stdout.strip_prefix("Password : ").unwrap().strip_suffix('\n').unwrap();
    assert_eq!(password.chars().count(), 20);
    assert_eq!(home.password("gen").as_deref(), Some(password));

    let json = home.user(&["-U", "gen", "-g", "-F", "json", "user", "edit"]);
    assert!(json.ok, "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let password = doc["Response"]["Password"].as_str().unwrap();
    assert_eq!(password.len(), 64);
    assert_eq!(home.password("gen").as_deref(), Some(password));

    let both = home.user(&["-U", "x", "-g", "-P", "pw", "user", "add"]);
    assert_eq!(both.code, Some(2));
    let long = home.user(&["-U", "x", "-g", "-l", "1025", "user", "add"]);
    assert_eq!(long.code, Some(2));
}

#[test]
fn admin_edit_and_del_change_the_vault() {
    let home = Home::new().with_master_key();
    for user in ["alice", "bob"] {
        assert!(home.user(&["-U", user, "-P", "first", "user", "add"]).ok);
    }
    let edit = home.user(&["-U", "alice", "-P", "second", "user", "edit"]);
    assert!(edit.ok, "{}", edit.stderr);
    assert_eq!(home.password("alice").as_deref(), Some("second"));
    assert_eq!(home.password("bob").as_deref(), Some("first"));
    assert_eq!(home.users(), ["alice", "bob"]);

    let del = home.user(&["-U", "alice", "user", "del"]);
    assert!(del.ok, "{}", del.stderr);
    assert_eq!(home.users(), ["bob"]);

    for command in ["del", "edit"] {
        let missing = home.user(&["-U", "alice", "-P", "third", "user", command]);
        assert_eq!(missing.code, Some(1), "{command}");
        assert!(missing.stderr.contains("\"alice\" does not exist"), "{}", missing.stderr);
        assert_eq!(missing.stderr.lines().count(), 1, "{}", missing.stderr);
    }
    assert_eq!(home.users(), ["bob"]);

    let json = home.user(&["-U", "nobody", "-F", "json", "user", "del"]);
    assert_eq!(json.code, Some(1));
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["Outcome"]["Status"], false);
    assert!(doc["Outcome"]["Error"].as_str().unwrap().contains("nobody"));
}

#[test]
fn admin_refuses_duplicates_missing_keys_and_full_vaults() {
    let home = Home::new();
    let no_key = home.user(&["-U", "alice", "-P", "pw", "user", "add"]);
    assert_eq!(no_key.code, Some(1));
    assert!(no_key.stderr.contains("no master key at"), "{}", no_key.stderr);
    assert!(!home.vault().exists());

    let no_file = home.run(&["-U", "alice", "-P", "pw", "user", "add"]);
    assert_eq!(no_file.code, Some(1));
    assert!(no_file.stderr.contains("-f FILE"), "{}", no_file.stderr);
    let no_vault = home.user(&["user", "ls"]);
    assert_eq!(no_vault.code, Some(1));
    assert!(no_vault.stderr.contains("does not exist"), "{}", no_vault.stderr);

    let home = home.with_master_key();
    assert!(home.user(&["-U", "alice", "-P", "pw", "user", "add"]).ok);
    let twice = home.user(&["-U", "alice", "-P", "other", "user", "add"]);
    assert_eq!(twice.code, Some(1));
    assert!(twice.stderr.contains("\"alice\" already exists"), "{}", twice.stderr);
    assert_eq!(home.password("alice").as_deref(), Some("pw"));

    let bad_name = home.user(&["-U", "a:b", "-P", "pw", "user", "add"]);
    assert_eq!(bad_name.code, Some(1));
    assert!(bad_name.stderr.contains("invalid user name"), "{}", bad_name.stderr);

    // Another master key does not open the vault: nothing is added under it.
    let other = Home::new();
    let run = other.run(&["master-key", "-P", "a different master key"]);
    assert!(run.ok, "{}", run.stderr);
    let foreign = finish(
        other
            .command(&["-f", home.vault().to_str().unwrap(), "-U", "eve", "-P", "pw", "user", "add"])
            .output()
            .unwrap(),
    );
    assert_eq!(foreign.code, Some(1));
    assert!(foreign.stderr.contains("does not open"), "{}", foreign.stderr);
    assert_eq!(home.users(), ["alice"]);

    // The admins vault holds 8.
    let admins = home.path().join("pgmoneta_admins.conf");
    let key = MasterKey::from_bytes([1u8; 64]);
    let mut vault = Vault::new(VaultKind::Admins);
    for i in 0..VaultKind::Admins.max_entries() {
        vault.add(&key, &format!("admin{i}"), "pw").unwrap();
    }
    vault.save(&admins).unwrap();
    let full = home.run(&["-f", admins.to_str().unwrap(), "-U", "one-more", "-P", "pw", "user", "add"]);
    assert_eq!(full.code, Some(1));
    assert!(full.stderr.contains("full"), "{}", full.stderr);
}

#[test]
fn admin_reads_names_and_passwords_from_piped_stdin() {
    let home = Home::new().with_master_key();
    let mut cmd = home.command(&["user", "add", "-f", home.vault().to_str().unwrap()]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"piped\npiped password\n").unwrap();
    let run = finish(child.wait_with_output().unwrap());
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(home.password("piped").as_deref(), Some("piped password"));

    // Nothing to read: an error, not a hang.
    let empty = home.user(&["-U", "nopass", "user", "add"]);
    assert_eq!(empty.code, Some(1));
    assert!(empty.stderr.contains("reading the password"), "{}", empty.stderr);
}

#[test]
fn admin_refuses_root_unless_allowed() {
    let root = nix::unistd::geteuid().is_root().then_some(());
    if pgmoneta_testkit::require(root, "running as root", "the refusal of root").is_none() {
        return;
    }
    let home = Home::new();
    for value in [None, Some("0")] {
        let mut cmd = home.command(&["master-key", "-P", "the master key of the test"]);
        match value {
            Some(v) => cmd.env("PGMONETA_ALLOW_ROOT", v),
            None => cmd.env_remove("PGMONETA_ALLOW_ROOT"),
        };
        let run = finish(cmd.output().unwrap());
        assert_eq!(run.code, Some(1));
        assert!(run.stderr.contains("root"), "{}", run.stderr);
        assert!(!home.path().join(".pgmoneta").exists());
    }
}

#[test]
fn admin_prints_help_and_version() {
    let home = Home::new();
    let help = home.run(&["-?"]);
    assert!(help.ok);
    assert!(help.stdout.contains("master-key") && help.stdout.contains("PGMONETA_ALLOW_ROOT"), "{}", help.stdout);
    let version = home.run(&["-V"]);
    assert_eq!(version.stdout, format!("pgmoneta-admin {}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(home.run(&[]).code, Some(2));
}

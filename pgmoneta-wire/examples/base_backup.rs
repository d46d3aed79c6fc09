//! Takes a base backup of a PostgreSQL server into a directory of tar files, as
//! `pg_basebackup -Ft` does: `base.tar` (the data directory), `<oid>.tar` per tablespace and
//! `backup_manifest`, each written under a temporary name, synced, then renamed.
//!
//! ```text
//! cargo run -p pgmoneta-wire --example base_backup -- <host> <port> <user> <password> <directory>
//! ```
//!
//! The user needs the `REPLICATION` attribute. `tar -xf base.tar -C <data directory>` unpacks
//! it; the WAL the backup needs is inside (`pg_wal/`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pgmoneta_wire::replication::{BaseBackupEvent, BaseBackupOptions};
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: base_backup <host> <port> <user> <password> <directory>");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("base_backup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A file being written under `<name>.tmp`.
struct Output {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    bytes: u64,
}

impl Output {
    fn create(dir: &Path, name: &str) -> std::io::Result<Output> {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        Ok(Output { file: File::create(&tmp)?, tmp, path, bytes: 0 })
    }

    fn finish(self) -> std::io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        println!("{} ({} bytes)", self.path.display(), self.bytes);
        Ok(())
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(&args[4]);
    std::fs::create_dir_all(&dir)?;
    let opts = ConnectOptions::new(&args[0], args[1].parse()?, &args[2])
        .password(&args[3])
        .replication(ReplicationMode::Physical)
        .ssl_mode(SslMode::Prefer);
    let mut conn = PgConnection::connect(&opts)?;
    let (version, _) = conn.server_version()?;
    let mut backup = conn.base_backup(&BaseBackupOptions::new("wire example"), version)?;
    eprintln!("backup starts at {} on timeline {}", backup.start_lsn(), backup.start_timeline());
    let mut current: Option<Output> = None;
    while let Some(event) = backup.next_event()? {
        match event {
            BaseBackupEvent::Archive(info) => {
                if let Some(done) = current.take() {
                    done.finish()?;
                }
                current = Some(Output::create(&dir, &info.name)?);
            }
            BaseBackupEvent::Manifest => {
                if let Some(done) = current.take() {
                    done.finish()?;
                }
                current = Some(Output::create(&dir, "backup_manifest")?);
            }
            BaseBackupEvent::ArchiveData(data) | BaseBackupEvent::ManifestData(data) => {
                let out = current.as_mut().ok_or("data before any archive")?;
                out.file.write_all(&data)?;
                out.bytes += data.len() as u64;
            }
            _ => {}
        }
    }
    if let Some(done) = current.take() {
        done.finish()?;
    }
    if let Some((end, timeline)) = backup.end() {
        eprintln!("backup ends at {end} on timeline {timeline}");
    }
    File::open(&dir)?.sync_all()?;
    Ok(())
}

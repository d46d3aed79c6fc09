//! Lists the backups of a server in a pgmoneta repository and, given a directory, restores one
//! there: the catalog, then a restore planned (and shown) before it is applied.
//!
//! ```text
//! cargo run -p pgmoneta-storage --example restore -- <base_dir> <server>
//! cargo run -p pgmoneta-storage --example restore -- <base_dir> <server> <label|newest|oldest> <directory> [<master.key>]
//! ```
//!
//! The master key file (`~/.pgmoneta/master.key`, as `pgmoneta-admin master-key` writes it) is
//! needed for encrypted backups.

use std::process::ExitCode;
use std::sync::Arc;

use pgmoneta_crypto::MasterKeyFile;
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::info::BackupType;
use pgmoneta_storage::restore::RestoreOptions;
use pgmoneta_storage::store::LocalStore;
use pgmoneta_storage::Repository;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: restore <base_dir> <server> [<label|newest|oldest> <directory> [<master.key>]]");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restore: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let key = args.get(4).map(|k| MasterKeyFile::new(k).load_cached()).transpose()?;
    let repo = Repository::open(Arc::new(LocalStore::new(&args[0])), key);
    let server = &args[1];
    let catalog = repo.catalog(server)?;
    for b in catalog.backups() {
        let kind = match b.backup_type {
            BackupType::Incremental => format!("incremental on {}", b.parent),
            _ => "full".to_owned(),
        };
        let state = if b.valid { "valid" } else { "not valid" };
        println!("{}  {state}  {kind}  {} bytes stored, {} to restore", b.label, b.backup_size, b.restore_size);
    }
    let (Some(which), Some(directory)) = (args.get(2), args.get(3)) else { return Ok(()) };
    let mut options = RestoreOptions::new(server, BackupSelector::parse(which), directory);
    options.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let planned = repo.plan_restore(&options)?;
    print!("{planned}");
    let report = repo.apply_restore(&options, &planned)?;
    println!("restored {} files, {} bytes, into {}", report.files, report.bytes, report.data_dir.display());
    Ok(())
}

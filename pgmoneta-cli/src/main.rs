//! `pgmoneta-cli`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Command-line interface of pgmoneta, the PostgreSQL backup and restore system.
#[derive(Debug, Parser)]
#[command(name = "pgmoneta-cli", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch a WAL segment or history file from the repository (PostgreSQL's restore_command:
    /// `pgmoneta-cli archive-get -c pgmoneta.conf <server> %f %p`).
    ArchiveGet {
        /// pgmoneta.conf, for base_dir.
        #[arg(short = 'c', long = "config", default_value = "/etc/pgmoneta/pgmoneta.conf")]
        config: PathBuf,
        /// The master key file, for encrypted archives (default ~/.pgmoneta/master.key).
        #[arg(long = "master-key")]
        master_key: Option<PathBuf>,
        /// The server.
        server: String,
        /// The file PostgreSQL asks for (%f).
        file: String,
        /// Where PostgreSQL wants it (%p).
        destination: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::ArchiveGet { config, master_key, server, file, destination } => {
            pgmoneta_cli::archive_get::run(&pgmoneta_cli::archive_get::ArchiveGet {
                config,
                master_key,
                server,
                file,
                destination,
            })
        }
    };
    std::process::exit(status);
}

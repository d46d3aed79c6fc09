//! `pgmoneta-cli`.

use clap::Parser;

fn main() {
    let cli = pgmoneta_cli::cli::Cli::parse();
    std::process::exit(pgmoneta_cli::cli::run(cli));
}

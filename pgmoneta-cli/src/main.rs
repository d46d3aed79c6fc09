//! `pgmoneta-cli`.

use clap::Parser;

fn main() {
    let cli = match pgmoneta_cli::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `check` is a monitoring plugin: a command line it cannot read is UNKNOWN (3), not
            // clap's usual 2, which a monitoring system would take for CRITICAL.
            let checking = std::env::args().skip(1).any(|a| a == "check");
            let code = if !e.use_stderr() {
                0
            } else if checking {
                3
            } else {
                e.exit_code()
            };
            std::process::exit(code);
        }
    };
    std::process::exit(pgmoneta_cli::cli::run(cli));
}

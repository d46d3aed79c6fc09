//! `pgmoneta-corpus`: makes the test corpus (see `pgmoneta_testkit::corpus`) with the servers
//! given as `major=bindir`, one per supported major, into `--out DIR` (default: the corpus
//! directory tests read). Does nothing when the corpus there was made from the same sources and
//! server versions, unless `--force`.

use std::path::PathBuf;
use std::process::ExitCode;

use pgmoneta_testkit::corpus;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut out = corpus::dir();
    let mut force = false;
    let mut servers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => match args.next() {
                Some(d) => out = PathBuf::from(d),
                None => return usage("--out needs a directory"),
            },
            "--force" => force = true,
            "-h" | "--help" => {
                println!(
                    "usage: pgmoneta-corpus [--out DIR] [--force] 14=BINDIR 15=BINDIR 16=BINDIR 17=BINDIR 18=BINDIR"
                );
                return ExitCode::SUCCESS;
            }
            _ => servers.push(a),
        }
    }
    let installs = match corpus::installs_from_args(&servers) {
        Ok(i) => i,
        Err(e) => return usage(&e.to_string()),
    };
    if !force && corpus::is_current(&out, &installs) {
        println!("the corpus at {} is up to date", out.display());
        return ExitCode::SUCCESS;
    }
    let started = std::time::Instant::now();
    match corpus::make(&installs, &out) {
        Ok(()) => {
            println!("made the corpus at {} in {:.0?}", out.display(), started.elapsed());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgmoneta-corpus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("pgmoneta-corpus: {why}\nusage: pgmoneta-corpus [--out DIR] [--force] 14=BINDIR ... 18=BINDIR");
    ExitCode::from(2)
}

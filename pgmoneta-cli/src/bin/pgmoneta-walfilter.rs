//! `pgmoneta-walfilter <yaml_config_file> [-c CONFIG_PATH] [-q]`: remove transactions from WAL.

use std::process::exit;

fn usage() {
    println!("pgmoneta-walfilter {}", env!("CARGO_PKG_VERSION"));
    println!("  Turns the records of chosen transactions in WAL into XLOG NOOP records");
    println!();
    println!("Usage:");
    println!("  pgmoneta-walfilter <yaml_config_file> [OPTIONS]");
    println!();
    println!("Options:");
    println!("  -c, --config CONFIG_PATH  The pgmoneta configuration file, in place of the YAML's configuration_file");
    println!("  -q, --quiet               No summary line");
    println!("  -V, --version             Version");
    println!("  -?, --help                This help");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // As upstream: no arguments at all is a request for the usage, not an error.
    if args.is_empty() {
        usage();
        return;
    }
    let mut yaml: Option<String> = None;
    let mut config: Option<String> = None;
    let mut quiet = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-?" | "-h" | "--help" => {
                usage();
                return;
            }
            "-V" | "--version" => {
                println!("pgmoneta-walfilter {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            "-q" | "--quiet" => quiet = true,
            "-c" | "--config" => match it.next() {
                Some(path) => config = Some(path),
                None => {
                    eprintln!("pgmoneta-walfilter: {arg} needs a configuration file");
                    exit(1);
                }
            },
            other if other.starts_with('-') && other.len() > 1 => {
                eprintln!("pgmoneta-walfilter: unknown option {other}");
                usage();
                exit(1);
            }
            _ if yaml.is_some() => {
                eprintln!("pgmoneta-walfilter: one YAML configuration file only, not also {arg}");
                exit(1);
            }
            _ => yaml = Some(arg),
        }
    }
    let Some(path) = yaml else {
        eprintln!("pgmoneta-walfilter: missing <yaml_config_file>");
        usage();
        exit(1);
    };
    if let Some(c) = &config {
        // The configuration file is checked as upstream checks it; filtering itself needs none
        // of its settings.
        match std::fs::metadata(c) {
            Ok(m) if m.is_file() => {}
            Ok(_) => fail(&format!("the configuration path {c} is not a file")),
            Err(e) => fail(&format!("the configuration file {c}: {e}")),
        }
    }
    let result = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))
        .and_then(|text| pgmoneta_cli::walfilter::parse_config(&text).map_err(|e| anyhow::anyhow!("{path}: {e}")))
        .and_then(|config| pgmoneta_cli::walfilter::run(&config, None));
    match result {
        Ok(r) if !quiet => {
            println!("{} segments, {} records, {} removed (transactions {:?})", r.files, r.records, r.removed, r.xids);
        }
        Ok(_) => {}
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("pgmoneta-walfilter: {message}");
    exit(1);
}

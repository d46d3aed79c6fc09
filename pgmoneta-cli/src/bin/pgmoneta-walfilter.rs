//! `pgmoneta-walfilter <yaml_config_file>`: remove transactions from WAL.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [p] if p != "-?" && p != "--help" => p.clone(),
        [v] if v == "-V" || v == "--version" => {
            println!("pgmoneta-walfilter {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(1);
        }
        _ => {
            eprintln!("pgmoneta-walfilter: turns the records of chosen transactions into XLOG NOOP records");
            eprintln!();
            eprintln!("Usage:");
            eprintln!("  pgmoneta-walfilter <yaml_config_file>");
            std::process::exit(1);
        }
    };
    let result = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))
        .and_then(|text| pgmoneta_cli::walfilter::parse_config(&text).map_err(|e| anyhow::anyhow!("{path}: {e}")))
        .and_then(|config| pgmoneta_cli::walfilter::run(&config, None));
    match result {
        Ok(r) => {
            println!("{} segments, {} records, {} removed (transactions {:?})", r.files, r.records, r.removed, r.xids);
        }
        Err(e) => {
            eprintln!("pgmoneta-walfilter: {e:#}");
            std::process::exit(1);
        }
    }
}

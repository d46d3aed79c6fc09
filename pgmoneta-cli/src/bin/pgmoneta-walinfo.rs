//! `pgmoneta-walinfo`: describe WAL records.

use std::path::PathBuf;

use clap::Parser;
use pgmoneta_cli::walinfo::{run, Format, Options};
use pgmoneta_core::Lsn;

/// Describe the records of WAL segments, directories of them, or tar archives, plain,
/// compressed or encrypted.
#[derive(Debug, Parser)]
#[command(name = "pgmoneta-walinfo", version, disable_help_flag = true, disable_version_flag = true)]
struct Args {
    /// A WAL segment, a directory of segments, or a tar archive.
    input: Option<PathBuf>,
    /// raw (default) or json.
    #[arg(short = 'F', long = "format", default_value = "raw")]
    format: String,
    /// Print exactly pg_waldump's lines (PostgreSQL 15's format).
    #[arg(long = "waldump")]
    waldump: bool,
    /// Write to this file.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Check every record, print none.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Colours: on or off (default: on a terminal).
    #[arg(long = "color")]
    color: Option<String>,
    /// Only this resource manager (repeatable; exact name, e.g. Heap).
    #[arg(short = 'r', long = "rmgr")]
    rmgr: Vec<String>,
    /// Only records at or after this LSN (X/X).
    #[arg(short = 's', long = "start")]
    start: Option<String>,
    /// Only records before this LSN (X/X).
    #[arg(short = 'e', long = "end")]
    end: Option<String>,
    /// Only this transaction (repeatable).
    #[arg(short = 'x', long = "xid")]
    xid: Vec<u32>,
    /// At most this many records.
    #[arg(short = 'l', long = "limit")]
    limit: Option<usize>,
    /// Statistics per resource manager.
    #[arg(short = 'S', long = "summary")]
    summary: bool,
    /// Names for OIDs from a mapping file (with -m).
    #[arg(short = 't', long = "translate")]
    translate: bool,
    /// The mapping file: {"tablespaces": [{"name": "oid"}], "databases": [...], "relations": [...]}.
    #[arg(short = 'm', long = "mapping")]
    mapping: Option<PathBuf>,
    /// The master key file, for encrypted files (default ~/.pgmoneta/master.key).
    #[arg(long = "master-key")]
    master_key: Option<PathBuf>,
    /// The users vault, to look OID names up on the servers of -c (with -t).
    #[arg(short = 'u', long = "users")]
    users: Option<PathBuf>,
    /// pgmoneta_walinfo.conf: server sections with host, port and user.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Only records touching these tablespaces (comma-separated names or OIDs; -RT).
    #[arg(long = "tablespaces", value_delimiter = ',')]
    tablespaces: Vec<String>,
    /// Only records touching these databases (-RD).
    #[arg(long = "databases", value_delimiter = ',')]
    databases: Vec<String>,
    /// Only records touching these relations (-RR).
    #[arg(long = "relations", value_delimiter = ',')]
    relations: Vec<String>,
    /// Only records touching a tablespace, database or relation of these names (-R).
    #[arg(short = 'R', long = "filter", value_delimiter = ',')]
    filter: Vec<String>,
    /// Append errors and a summary line to this file.
    #[arg(short = 'L', long = "logfile")]
    logfile: Option<PathBuf>,
    /// Report the files read and the records shown on standard error.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Browse the records on the terminal (? for keys).
    #[arg(short = 'I', long = "interactive")]
    interactive: bool,
    /// Print the version.
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Print help.
    #[arg(short = '?', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn lsn(text: &str) -> anyhow::Result<Lsn> {
    if let Ok(l) = text.parse::<Lsn>() {
        return Ok(l);
    }
    text.parse::<u64>().map(Lsn).map_err(|_| anyhow::anyhow!("{text:?} is not an LSN (X/X) or a number"))
}

fn main() {
    pgmoneta_cli::print_man_page_if_asked(<Args as clap::CommandFactory>::command());
    // Upstream's two-letter short options.
    let argv = std::env::args().map(|a| match a.as_str() {
        "-RT" => "--tablespaces".to_owned(),
        "-RD" => "--databases".to_owned(),
        "-RR" => "--relations".to_owned(),
        _ => a,
    });
    let args = Args::parse_from(argv);
    if args.version {
        println!("pgmoneta-walinfo {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(1);
    }
    let result = (|| -> anyhow::Result<usize> {
        let Some(input) = args.input.clone() else {
            anyhow::bail!("Usage: pgmoneta-walinfo [options] <file|directory|tar archive> (see -?)");
        };
        let format = match (args.waldump, args.format.as_str()) {
            (true, _) => Format::Waldump,
            (false, "raw") => Format::Raw,
            (false, "json") => Format::Json,
            (false, other) => anyhow::bail!("-F {other}: expected raw or json"),
        };
        let color = match args.color.as_deref() {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(other) => anyhow::bail!("--color {other}: expected on or off"),
        };
        if args.translate && args.mapping.is_none() && args.users.is_none() {
            anyhow::bail!("-t needs a mapping file (-m) or servers to ask (-u users vault, -c pgmoneta_walinfo.conf)");
        }
        run(&Options {
            input,
            format,
            output: args.output.clone(),
            quiet: args.quiet,
            color,
            rmgrs: args.rmgr.clone(),
            start: args.start.as_deref().map(lsn).transpose()?,
            end: args.end.as_deref().map(lsn).transpose()?,
            xids: args.xid.clone(),
            limit: args.limit,
            summary: args.summary,
            mapping: if args.translate || args.mapping.is_some() { args.mapping.clone() } else { None },
            master_key: args.master_key.clone(),
            users: if args.translate { args.users.clone() } else { None },
            config: args.config.clone(),
            tablespaces: args.tablespaces.clone(),
            databases: args.databases.clone(),
            relations: args.relations.clone(),
            names: args.filter.clone(),
            verbose: args.verbose,
            interactive: args.interactive,
        })
    })();
    let log = |line: String| {
        if let Some(path) = &args.logfile {
            use std::io::Write;
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
        }
    };
    match result {
        Ok(n) => log(format!("pgmoneta-walinfo: {n} records")),
        Err(e) => {
            log(format!("pgmoneta-walinfo: {e:#}"));
            eprintln!("pgmoneta-walinfo: {e:#}");
            std::process::exit(1);
        }
    }
}

//! The command-line tools: `pgmoneta-cli` (drives the daemon over the management protocol, and
//! serves PostgreSQL's `restore_command`), `pgmoneta-admin` (master key and user vaults) and
//! `pgmoneta-walinfo` (decodes WAL).
#![deny(missing_docs)]

pub mod admin;
pub mod archive_get;
pub mod cli;
pub mod client;
pub mod output;
pub mod prefetch;
pub mod walfilter;
pub mod walinfo;
pub mod walview;

/// For packagers: when `--man-page` is the program's only argument, prints its manual page,
/// made from the same definition as its `--help`, and exits.
pub fn print_man_page_if_asked(command: clap::Command) {
    use std::io::Write;
    if std::env::args().skip(1).collect::<Vec<_>>() != ["--man-page"] {
        return;
    }
    let mut page = Vec::new();
    let written = clap_mangen::Man::new(command).render(&mut page).and_then(|()| std::io::stdout().write_all(&page));
    std::process::exit(if written.is_ok() { 0 } else { 1 });
}

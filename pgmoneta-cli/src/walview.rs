//! `pgmoneta-walinfo -I`: an interactive list of records on the terminal.
//!
//! Keys: ↑/↓ or k/j move, PgUp/PgDn, Home/End, Enter shows the record (t text, b hex, q back),
//! / searches (n next, p previous), m marks the record's transaction, g writes
//! `walfilter.yaml` with the marked transactions, ? help, q quits.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};
use pgmoneta_wire::wal::DecodedRecord;

/// One listed record: its line and the record.
pub struct Entry {
    /// The raw line shown in the list.
    pub line: String,
    /// The record.
    pub record: DecodedRecord,
    /// Its description, for the detail view.
    pub detail: String,
}

struct Raw {
    tty: File,
    saved: Termios,
}

impl Raw {
    fn enter() -> Result<Raw> {
        let tty = OpenOptions::new().read(true).write(true).open("/dev/tty").context("-I needs a terminal")?;
        let saved = termios::tcgetattr(&tty).context("-I needs a terminal")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&tty, SetArg::TCSANOW, &raw)?;
        let mut r = Raw { tty, saved };
        r.tty.write_all(b"\x1b[?1049h\x1b[?25l")?;
        Ok(r)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.tty.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = termios::tcsetattr(&self.tty, SetArg::TCSANOW, &self.saved);
    }
}

/// Terminal rows and columns (`stty size`), 24×80 when unknown.
fn size() -> (usize, usize) {
    let out = File::open("/dev/tty")
        .ok()
        .and_then(|tty| std::process::Command::new("stty").arg("size").stdin(tty).output().ok());
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|v| v.parse::<usize>().ok());
    match (it.next(), it.next()) {
        (Some(r), Some(c)) if r > 3 && c > 20 => (r, c),
        _ => (24, 80),
    }
}

enum Key {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Char(char),
}

fn read_key(tty: &mut File) -> Result<Option<Key>> {
    let mut b = [0u8; 1];
    if tty.read(&mut b)? == 0 {
        return Ok(None);
    }
    Ok(Some(match b[0] {
        b'\r' | b'\n' => Key::Enter,
        0x1b => {
            let mut seq = [0u8; 1];
            if tty.read(&mut seq)? == 0 || seq[0] != b'[' {
                return Ok(Some(Key::Esc));
            }
            tty.read_exact(&mut seq)?;
            match seq[0] {
                b'A' => Key::Up,
                b'B' => Key::Down,
                b'H' => Key::Home,
                b'F' => Key::End,
                d @ (b'1' | b'4' | b'5' | b'6') => {
                    let mut tilde = [0u8; 1];
                    tty.read_exact(&mut tilde)?;
                    match d {
                        b'1' => Key::Home,
                        b'4' => Key::End,
                        b'5' => Key::PageUp,
                        _ => Key::PageDown,
                    }
                }
                _ => Key::Esc,
            }
        }
        c => Key::Char(char::from(c)),
    }))
}

fn fit(s: &str, cols: usize) -> String {
    s.chars().take(cols).collect()
}

fn hex_dump(raw: &[u8]) -> Vec<String> {
    raw.chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let mut l = format!("{:08X}  ", i * 16);
            for b in c {
                let _ = write!(l, "{b:02X} ");
            }
            l
        })
        .collect()
}

/// Shows the entries until the operator quits.
///
/// # Errors
/// No terminal, or terminal I/O failing.
pub fn browse(entries: &[Entry]) -> Result<()> {
    let mut raw = Raw::enter()?;
    let (rows, cols) = size();
    let page = rows - 2;
    let (mut at, mut top) = (0usize, 0usize);
    let mut marked: BTreeSet<u32> = BTreeSet::new();
    let mut search = String::new();
    let mut message = String::from("? help  q quit");
    loop {
        if at < top {
            top = at;
        }
        if at >= top + page {
            top = at + 1 - page;
        }
        let mut screen = String::from("\x1b[H\x1b[2J");
        for (i, e) in entries.iter().enumerate().skip(top).take(page) {
            let mark = if marked.contains(&e.record.xid) && e.record.xid != 0 { '*' } else { ' ' };
            let line = fit(&format!("{mark}{}", e.line), cols);
            if i == at {
                let _ = write!(screen, "\x1b[7m{line}\x1b[0m\r\n");
            } else {
                let _ = write!(screen, "{line}\r\n");
            }
        }
        let _ = write!(
            screen,
            "\x1b[{rows};1H\x1b[7m{}\x1b[0m",
            fit(&format!(" {}/{}  {message}", if entries.is_empty() { 0 } else { at + 1 }, entries.len()), cols)
        );
        raw.tty.write_all(screen.as_bytes())?;
        let Some(key) = read_key(&mut raw.tty)? else { return Ok(()) };
        let last = entries.len().saturating_sub(1);
        match key {
            Key::Up | Key::Char('k') => at = at.saturating_sub(1),
            Key::Down | Key::Char('j') => at = (at + 1).min(last),
            Key::PageUp => at = at.saturating_sub(page),
            Key::PageDown => at = (at + page).min(last),
            Key::Home => at = 0,
            Key::End => at = last,
            Key::Enter if !entries.is_empty() => detail(&mut raw.tty, &entries[at], rows, cols)?,
            Key::Char('m') if !entries.is_empty() => {
                let xid = entries[at].record.xid;
                if xid != 0 && !marked.remove(&xid) {
                    marked.insert(xid);
                }
                message = format!("marked transactions: {marked:?}");
            }
            Key::Char('g') => {
                let list: Vec<String> = marked.iter().map(u32::to_string).collect();
                let yaml =
                    format!("source_dir: <source>\ntarget_dir: <target>\nrules:\n  - xids: [{}]\n", list.join(", "));
                std::fs::write("walfilter.yaml", yaml).context("writing walfilter.yaml")?;
                message = format!("walfilter.yaml written with {} transactions", marked.len());
            }
            Key::Char('/') | Key::Char('s') => {
                search = prompt(&mut raw.tty, rows, "search: ")?;
                if let Some(i) = (at..entries.len()).chain(0..at).find(|i| entries[*i].line.contains(&search)) {
                    at = i;
                }
                message = format!("search {search:?}: n next, p previous");
            }
            Key::Char('n') if !search.is_empty() => {
                if let Some(i) = (at + 1..entries.len()).chain(0..=at).find(|i| entries[*i].line.contains(&search)) {
                    at = i;
                }
            }
            Key::Char('p') if !search.is_empty() => {
                if let Some(i) =
                    (0..at).rev().chain((at..entries.len()).rev()).find(|i| entries[*i].line.contains(&search))
                {
                    at = i;
                }
            }
            Key::Char('?') => {
                message = "↑↓ jk PgUp PgDn Home End move, Enter record, / search, n p, m mark, g walfilter.yaml, q quit"
                    .to_owned()
            }
            Key::Char('q') => return Ok(()),
            _ => {}
        }
    }
}

fn prompt(tty: &mut File, rows: usize, label: &str) -> Result<String> {
    let mut text = String::new();
    loop {
        tty.write_all(format!("\x1b[{rows};1H\x1b[2K{label}{text}").as_bytes())?;
        match read_key(tty)? {
            None | Some(Key::Enter) => return Ok(text),
            Some(Key::Esc) => return Ok(String::new()),
            Some(Key::Char('\x7f')) => {
                text.pop();
            }
            Some(Key::Char(c)) if !c.is_control() => text.push(c),
            _ => {}
        }
    }
}

fn detail(tty: &mut File, e: &Entry, rows: usize, cols: usize) -> Result<()> {
    let r = &e.record;
    let text: Vec<String> = vec![
        format!(
            "rmgr: {}  lsn: {}  end: {}  prev: {}",
            pgmoneta_wire::wal::desc::rmgr_name(r.rmid),
            r.lsn,
            r.end,
            r.prev
        ),
        format!(
            "xid: {}  info: 0x{:02X}  length: {} (records {} + images {})  crc: {:08X}",
            r.xid,
            r.info,
            r.total_len,
            r.total_len - r.fpi_len(),
            r.fpi_len(),
            r.crc
        ),
        String::new(),
    ]
    .into_iter()
    .chain(e.detail.split("; ").map(str::to_owned))
    .collect();
    let hex = hex_dump(&r.raw);
    let (mut show_hex, mut top) = (false, 0usize);
    loop {
        let lines = if show_hex { &hex } else { &text };
        let mut screen = String::from("\x1b[H\x1b[2J");
        for l in lines.iter().skip(top).take(rows - 2) {
            let _ = write!(screen, "{}\r\n", fit(l, cols));
        }
        let _ = write!(screen, "\x1b[{rows};1H\x1b[7m{}\x1b[0m", fit(" t text  b hex  ↑↓ scroll  q back", cols));
        tty.write_all(screen.as_bytes())?;
        match read_key(tty)? {
            None | Some(Key::Esc) | Some(Key::Char('q')) => return Ok(()),
            Some(Key::Char('b')) => (show_hex, top) = (true, 0),
            Some(Key::Char('t')) => (show_hex, top) = (false, 0),
            Some(Key::Down) | Some(Key::Char('j')) => top = (top + 1).min(lines.len().saturating_sub(1)),
            Some(Key::Up) | Some(Key::Char('k')) => top = top.saturating_sub(1),
            _ => {}
        }
    }
}

//! The prefetch process behind `archive-get`: one per spool directory, started by the first
//! `archive-get` that finds none, serving every later call of the same recovery.
//!
//! Each `archive-get` asks it for one file over a Unix socket in the spool (`GET <name>
//! <configuration>`) and is answered `READY` (the file is in the spool, plain, and the caller
//! renames it into place), `MISSING <why>`, `FAILED <why>`, or `OTHER <why>` when the process
//! reads another configuration (the caller then fetches by itself). The process derives the master key once, fetches the file
//! asked for first, then keeps the next `depth` segments fetched, decrypted and decompressed
//! in the spool on a few threads while PostgreSQL replays. The spool holds at most the file
//! asked for and `depth` segments ahead; files that fall out of that window are removed. After
//! `idle` without a request (recovery has ended, or stopped) the process removes the spool and
//! exits. An exclusive lock on `prefetch.lock` keeps it to one process per spool, so several
//! recoveries run side by side, each with its own spool.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use pgmoneta_core::{WalFileKind, WalSegment, WalSegmentSize};
use pgmoneta_crypto::MasterKey;

use crate::archive_get::{is_not_found, ArchiveGet, Source};

/// The socket, in the spool.
const SOCKET: &str = "prefetch.sock";
/// The lock held for the process's life, in the spool.
const LOCK: &str = "prefetch.lock";
/// How long `archive-get` waits for a newly started process to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The prefetch process's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The file is at the destination.
    Ready,
    /// The archive does not have it.
    Missing(String),
    /// It could not be fetched (damaged, wrong key...).
    Failed(String),
}

/// How the prefetch process runs (the hidden `archive-prefetch` command).
#[derive(Debug, Clone)]
pub struct PrefetchOptions {
    /// `pgmoneta.conf`.
    pub config: PathBuf,
    /// The master key file.
    pub master_key: Option<PathBuf>,
    /// The server.
    pub server: String,
    /// The spool directory.
    pub spool: PathBuf,
    /// Segments kept fetched ahead.
    pub depth: usize,
    /// Threads fetching.
    pub threads: usize,
    /// Exit after this long without a request.
    pub idle: Duration,
}

/// The spool of a call: `pgmoneta-spool-<server>` in `--spool`, or beside the destination. The
/// process owns that directory (it empties and removes it), never the one named by `--spool`.
fn spool_of(args: &ArchiveGet, destination: &Path) -> PathBuf {
    let parent = match &args.spool {
        Some(s) => s.as_path(),
        None => destination.parent().unwrap_or(Path::new(".")),
    };
    parent.join(format!("pgmoneta-spool-{}", args.server))
}

/// Asks the spool's prefetch process for `args.file` (starting the process when none runs)
/// and moves the file to the destination when it is ready.
///
/// # Errors
/// When the spool or the process cannot be used (the caller then fetches by itself).
pub(crate) fn request(args: &ArchiveGet) -> anyhow::Result<Answer> {
    if args.file.is_empty() || args.file.contains('/') || args.file.starts_with('.') {
        anyhow::bail!("{:?} is not a WAL file name", args.file);
    }
    let destination = std::path::absolute(&args.destination)?;
    let spool = std::path::absolute(spool_of(args, &destination))?;
    if !spool.is_dir() {
        fs::create_dir_all(&spool).with_context(|| format!("creating the spool {}", spool.display()))?;
    }
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making the spool {} private", spool.display()))?;
    // Socket paths are short: name it relative to the spool.
    std::env::set_current_dir(&spool).with_context(|| format!("entering the spool {}", spool.display()))?;
    let mut stream = match UnixStream::connect(SOCKET) {
        Ok(s) => s,
        Err(_) => {
            let mut child = start_process(args, &spool)?;
            let mut deadline = Instant::now() + START_TIMEOUT;
            loop {
                match UnixStream::connect(SOCKET) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(e).context("the prefetch process did not start listening")
                    }
                    Err(_) => {
                        // Failed at once; or exited 0: another process holds the spool, about
                        // to listen (just started) or to leave (idle): a second is enough.
                        if let Some(status) = child.try_wait()? {
                            if !status.success() {
                                anyhow::bail!("the prefetch process could not start ({status})");
                            }
                            deadline = deadline.min(Instant::now() + Duration::from_secs(1));
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        }
    };
    // The configuration travels with the request: a spool shared by calls for another
    // repository is not served by this process.
    writeln!(stream, "GET {} {}", args.file, args.config.display())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let line = line.trim_end();
    let (word, why) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "READY" => {
            move_file(&spool.join(&args.file), &destination)?;
            Ok(Answer::Ready)
        }
        "MISSING" => Ok(Answer::Missing(why.to_owned())),
        "FAILED" => Ok(Answer::Failed(why.to_owned())),
        "OTHER" => anyhow::bail!("the spool {} serves another configuration: {why}", spool.display()),
        "" => anyhow::bail!("the prefetch process closed the connection without an answer"),
        other => anyhow::bail!("the prefetch process answered {other:?}"),
    }
}

/// Renames `from` to `to`, copying when they are on different file systems.
fn move_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            let temp = to.with_extension("pgmoneta-tmp");
            fs::copy(from, &temp).with_context(|| format!("copying {} to {}", from.display(), temp.display()))?;
            fs::rename(&temp, to).with_context(|| format!("renaming {} to {}", temp.display(), to.display()))?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("moving {} to {}", from.display(), to.display())),
    }
}

/// Starts the prefetch process for `spool`, detached: it outlives this call and serves the
/// next ones.
fn start_process(args: &ArchiveGet, spool: &Path) -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe().context("finding pgmoneta-cli itself")?;
    let mut cmd = Command::new(exe);
    cmd.arg("-c").arg(std::path::absolute(&args.config)?).arg("archive-prefetch");
    cmd.arg("--spool").arg(spool).arg("--depth").arg(args.prefetch.to_string());
    cmd.arg("--idle").arg(args.idle.as_secs().max(1).to_string());
    if let Some(k) = &args.master_key {
        cmd.arg("--master-key").arg(std::path::absolute(k)?);
    }
    cmd.arg(&args.server);
    // Its own process group: signals PostgreSQL sends to its restore_command do not reach it.
    // No standard streams of the caller's: whoever reads this call's output to its end (a
    // script, a test) must not wait for the process. Its failures reach the caller in its
    // answers; one that keeps it from starting, through the direct fetch that follows.
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    // Waited for only while it starts: it runs past this process (init reaps it).
    cmd.spawn().context("starting the prefetch process")
}

/// A spool slot.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    Queued,
    Fetching,
    Ready,
    Missing(String),
    Failed(String),
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    queue: VecDeque<String>,
    /// Learnt from the first segment fetched.
    segment_size: Option<WalSegmentSize>,
    /// Requests being answered.
    requests: usize,
    last_request: Option<Instant>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    source: Source,
    key: Mutex<Option<Arc<MasterKey>>>,
    /// The configuration this process reads (requests naming another are refused).
    config: PathBuf,
    depth: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The master key, derived on first use; a failure is not kept (the file may be fixed
    /// while recovery retries).
    fn key(&self) -> Result<Arc<MasterKey>, String> {
        let mut key = self.key.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = key.as_ref() {
            return Ok(k.clone());
        }
        let k = Arc::new(self.source.load_key().map_err(|e| format!("{e:#}"))?);
        *key = Some(k.clone());
        Ok(k)
    }
}

/// Runs the prefetch process; returns its exit status.
pub fn serve(options: &PrefetchOptions) -> i32 {
    match serve_inner(options) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pgmoneta-cli archive-prefetch {}: {e:#}", options.spool.display());
            1
        }
    }
}

fn serve_inner(options: &PrefetchOptions) -> anyhow::Result<()> {
    std::env::set_current_dir(&options.spool)?;
    let lock = File::create(LOCK)?;
    let Ok(lock) = Flock::lock(lock, FlockArg::LockExclusiveNonblock) else {
        // Another process serves this spool.
        return Ok(());
    };
    // What a process that died left behind.
    for entry in fs::read_dir(".")? {
        let name = entry?.file_name();
        if name != LOCK {
            let _ = fs::remove_file(&name);
        }
    }
    let source = Source::open(&options.config, &options.server, options.master_key.as_deref())?;
    let listener = UnixListener::bind(SOCKET)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State { last_request: Some(Instant::now()), ..State::default() }),
        changed: Condvar::new(),
        source,
        key: Mutex::new(None),
        config: options.config.clone(),
        depth: options.depth,
    });
    for _ in 0..options.threads.max(1) {
        let shared = shared.clone();
        std::thread::spawn(move || fetch_loop(&shared));
    }
    {
        let shared = shared.clone();
        let (spool, idle) = (options.spool.clone(), options.idle);
        std::thread::spawn(move || {
            watch_idle(&shared, &spool, idle);
            drop(lock);
            std::process::exit(0);
        });
    }
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || answer(&shared, conn));
    }
    Ok(())
}

/// Returns once nothing was asked for `idle`, having removed the spool, or once the spool was
/// removed under it (touching nothing: the path may be another process's spool by now).
fn watch_idle(shared: &Shared, spool: &Path, idle: Duration) {
    loop {
        std::thread::sleep(Duration::from_millis(250).min(idle));
        if !Path::new(LOCK).exists() {
            return;
        }
        let st = shared.lock();
        if st.requests == 0 && st.last_request.is_some_and(|t| t.elapsed() >= idle) {
            // New callers start a process of their own from here on.
            let _ = fs::remove_file(SOCKET);
            let _ = fs::remove_dir_all(spool);
            return;
        }
    }
}

/// One fetching thread: takes queued names, fetches each into the spool.
fn fetch_loop(shared: &Shared) {
    loop {
        let name = {
            let mut st = shared.lock();
            loop {
                if let Some(name) = st.queue.pop_front() {
                    if st.slots.get(&name) == Some(&Slot::Queued) {
                        st.slots.insert(name.clone(), Slot::Fetching);
                        break name;
                    }
                    continue;
                }
                st = shared.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fetch_one(shared, &name)))
            .unwrap_or_else(|_| Err((false, format!("fetching {name} failed unexpectedly"))));
        let mut st = shared.lock();
        if let Ok(size) = result {
            if st.segment_size.is_none() && is_segment(&name) {
                st.segment_size = WalSegmentSize::new(size).ok();
            }
        }
        match (st.slots.get(&name), result) {
            // Dropped from the window while it was fetched.
            (None, Ok(_)) => {
                let _ = fs::remove_file(&name);
            }
            (None, Err(_)) => {}
            // The file is complete: whoever wants it now can have it.
            (Some(_), Ok(_)) => {
                st.slots.insert(name, Slot::Ready);
            }
            // Asked for again meanwhile: this outcome answers that too.
            (Some(Slot::Fetching | Slot::Queued), Err((missing, why))) => {
                st.slots.insert(name, if missing { Slot::Missing(why) } else { Slot::Failed(why) });
            }
            (Some(_), Err(_)) => {}
        }
        shared.changed.notify_all();
    }
}

/// Fetches `name` into the spool: its size, or (missing?, why).
fn fetch_one(shared: &Shared, name: &str) -> Result<u64, (bool, String)> {
    let (stored, encrypted) = shared.source.locate(name).map_err(|e| (true, e.to_string()))?;
    let key = if encrypted { Some(shared.key().map_err(|e| (false, e))?) } else { None };
    shared.source.fetch(&stored, Path::new(name), key.as_deref()).map_err(|e| {
        let e = anyhow::Error::from(e);
        (is_not_found(&e), format!("{e:#}"))
    })
}

fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Answers one `archive-get`.
fn answer(shared: &Shared, conn: UnixStream) {
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    let Some((name, config)) = line.trim_end().strip_prefix("GET ").map(|r| r.split_once(' ').unwrap_or((r, "")))
    else {
        return;
    };
    let name = name.to_owned();
    if Path::new(config) != shared.config {
        let _ = (&conn).write_all(format!("OTHER it reads {}\n", shared.config.display()).as_bytes());
        return;
    }
    let reply = {
        let mut st = shared.lock();
        st.requests += 1;
        match st.slots.get(&name) {
            // Being fetched ahead: wait for it.
            Some(Slot::Fetching) => {}
            Some(Slot::Ready) if Path::new(&name).exists() => {}
            // Queued ahead, missing or failed earlier (it may be there now), or new: first.
            _ => {
                queue_first(&mut st, &name);
                shared.changed.notify_all();
            }
        }
        let slot = loop {
            match st.slots.get(&name) {
                Some(Slot::Queued | Slot::Fetching) => {}
                Some(_) => break st.slots.remove(&name),
                // Dropped by another request's window: ask again.
                None => {
                    queue_first(&mut st, &name);
                    shared.changed.notify_all();
                }
            }
            st = shared.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        };
        plan_window(&mut st, &name, shared.depth);
        st.requests -= 1;
        st.last_request = Some(Instant::now());
        shared.changed.notify_all();
        match slot {
            Some(Slot::Ready) => "READY".to_owned(),
            Some(Slot::Missing(why)) => format!("MISSING {why}"),
            Some(Slot::Failed(why)) => format!("FAILED {why}"),
            _ => "FAILED the prefetch process lost the request".to_owned(),
        }
    };
    let _ = (&conn).write_all(format!("{reply}\n").as_bytes());
}

/// Puts `name` at the head of the queue.
fn queue_first(st: &mut State, name: &str) {
    st.queue.retain(|n| n != name);
    st.slots.insert(name.to_owned(), Slot::Queued);
    st.queue.push_front(name.to_owned());
}

/// After `name` was handed over: the spool keeps the `depth` segments that follow it (queued
/// when not fetched yet, retried when they were missing) and drops everything else.
fn plan_window(st: &mut State, name: &str, depth: usize) {
    let Some(size) = st.segment_size else { return };
    let Ok(WalFileKind::Segment(first)) = WalFileKind::parse(name, size) else { return };
    let window: Vec<String> = std::iter::successors(Some(first), |s: &WalSegment| Some(s.next()))
        .skip(1)
        .take(depth)
        .map(|s| s.file_name(size))
        .collect();
    let outside: Vec<String> = st.slots.keys().filter(|k| !window.contains(k)).cloned().collect();
    for k in outside {
        if st.slots.remove(&k) == Some(Slot::Ready) {
            let _ = fs::remove_file(&k);
        }
    }
    st.queue.retain(|n| window.contains(n));
    for w in window {
        match st.slots.get(&w) {
            Some(Slot::Queued | Slot::Fetching | Slot::Ready) => {}
            _ => {
                st.slots.insert(w.clone(), Slot::Queued);
                st.queue.push_back(w);
            }
        }
    }
}

//! This node in its cluster: the peers it hears from, and its role for each server.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pgmoneta_core::config::Config;
use pgmoneta_core::{Lsn, WalSegment, WalSegmentSize};
use pgmoneta_storage::catalog::Catalog;
use pgmoneta_wire::cluster::{NodeView, Role, ServerView};
use pgmoneta_wire::management::response::{ClusterPeer, ClusterServer, ClusterStatusResponse};

use super::role::{Action, Event, RoleMachine, Timing};
use crate::state::Shared;

/// What this node knows of one peer.
#[derive(Clone, Debug, Default)]
pub struct PeerState {
    /// `host:port` of its cluster port.
    pub address: String,
    /// Its last view.
    pub view: Option<NodeView>,
    /// When that view arrived.
    pub heard: Option<Instant>,
    /// Why it cannot be reached, while it cannot.
    pub problem: Option<String>,
}

/// This node's cluster state (present when `cluster` is set).
#[derive(Debug)]
pub struct Cluster {
    /// This node's name.
    pub me: String,
    /// Heartbeat and takeover.
    pub timing: Timing,
    peers: Mutex<BTreeMap<String, PeerState>>,
    roles: Mutex<BTreeMap<String, RoleMachine>>,
    /// Per server, the plain name of the newest WAL file this node holds from copying (or
    /// found at the first copy): where the next copy starts.
    wal_cursor: Mutex<BTreeMap<String, String>>,
    /// The peers a connection thread runs for.
    linked: Mutex<std::collections::BTreeSet<String>>,
    /// This node's view as last built, and when: every heartbeat to and from every peer
    /// carries it, and building it reads each server's catalog.
    last_view: Mutex<Option<(Instant, NodeView)>>,
    /// Per server, the backups this node deleted (newest last), read from the server's
    /// [`DELETED_FILE`] at first use: peers that follow this node delete them too.
    deleted: Mutex<BTreeMap<String, Vec<String>>>,
    /// Per server, the backup this node is copying from a peer: reported busy, so that the
    /// peer does not delete it meanwhile.
    copying: Mutex<BTreeMap<String, String>>,
}

/// The file, in a server's directory, that lists the backups this node deleted.
pub const DELETED_FILE: &str = ".cluster-deleted";

/// How many deleted labels are remembered per server.
const DELETED_KEPT: usize = 1000;

/// `cluster_peers` as name to `host:port` (`[v6]:port`).
fn peer_addresses(config: &Config) -> BTreeMap<String, String> {
    config
        .main
        .cluster_peers
        .0
        .iter()
        .map(|p| {
            let address = if p.host.contains(':') {
                format!("[{}]:{}", p.host, p.port)
            } else {
                format!("{}:{}", p.host, p.port)
            };
            (p.name.clone(), address)
        })
        .collect()
}

impl Cluster {
    /// The cluster state for `config`; `None` when clustering is off.
    pub fn from_config(config: &Config, now: Instant) -> Option<Cluster> {
        let m = &config.main;
        if m.cluster == 0 {
            return None;
        }
        let me = m.cluster_node.clone()?;
        let timing = Timing {
            heartbeat: Duration::from_secs(m.cluster_heartbeat.seconds().max(1)),
            takeover: Duration::from_secs(m.cluster_takeover.seconds().max(2)),
        };
        let peers = peer_addresses(config)
            .into_iter()
            .map(|(name, address)| (name, PeerState { address, ..PeerState::default() }))
            .collect();
        let roles = config.servers.iter().map(|s| (s.name.clone(), RoleMachine::new(&me, timing, now))).collect();
        Some(Cluster {
            me,
            timing,
            peers: Mutex::new(peers),
            roles: Mutex::new(roles),
            wal_cursor: Mutex::new(BTreeMap::new()),
            linked: Mutex::new(std::collections::BTreeSet::new()),
            last_view: Mutex::new(None),
            deleted: Mutex::new(BTreeMap::new()),
            copying: Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether `node` is a configured peer.
    pub fn is_peer(&self, node: &str) -> bool {
        self.peers.lock().contains_key(node)
    }

    /// Takes the peers of a reloaded configuration: peers no longer named are forgotten (their
    /// connections end), new ones are added, changed addresses apply to the next connection.
    pub fn reconfigure(&self, config: &Config) {
        let wanted = peer_addresses(config);
        let mut peers = self.peers.lock();
        peers.retain(|name, _| wanted.contains_key(name));
        for (name, address) in wanted {
            let entry = peers.entry(name).or_default();
            entry.address = address;
        }
    }

    /// The address of peer `node`, while it is one.
    pub fn address(&self, node: &str) -> Option<String> {
        self.peers.lock().get(node).map(|p| p.address.clone())
    }

    /// Marks that a connection thread runs for `node`; `false` when one already does.
    pub fn link_started(&self, node: &str) -> bool {
        self.linked.lock().insert(node.to_owned())
    }

    /// The connection thread for `node` ended.
    pub fn link_ended(&self, node: &str) {
        self.linked.lock().remove(node);
    }

    /// What this node knows of each peer, by name.
    pub fn peers(&self) -> BTreeMap<String, PeerState> {
        self.peers.lock().clone()
    }

    /// This node's role for `server`.
    pub fn role(&self, server: &str) -> Option<Role> {
        self.roles.lock().get(server).map(RoleMachine::role)
    }

    /// Whether this node's WAL receiver may try `server`'s slot: while it claims it or holds
    /// it. A follower leaves the slot to the node it follows.
    pub fn may_stream(&self, server: &str) -> bool {
        matches!(self.role(server), Some(Role::Claiming | Role::Active))
    }

    /// Whether this node may write for `server` now (take a backup, apply retention, delete):
    /// it is active and heard from the server within `cluster_takeover`.
    pub fn may_write(&self, server: &str) -> bool {
        self.roles.lock().get(server).is_some_and(|m| m.may_write(Instant::now()))
    }

    /// The node active for `server` as far as this node knows: itself, or the peer it follows.
    pub fn active_node(&self, server: &str) -> Option<String> {
        match self.role(server)? {
            Role::Active => Some(self.me.clone()),
            _ => self.leader(server),
        }
    }

    /// Takes what this node's WAL receiver met for `server` (the slot busy, the connection
    /// lost) and carries out what the role says.
    pub fn event(&self, shared: &Shared, server: &str, event: Event) {
        let actions = match self.roles.lock().get_mut(server) {
            Some(machine) => machine.handle(Instant::now(), event),
            None => return,
        };
        carry_out(shared, server, actions);
    }

    /// The peer this node follows for `server`, while it follows one.
    pub fn leader(&self, server: &str) -> Option<String> {
        let roles = self.roles.lock();
        let machine = roles.get(server)?;
        if machine.role() == Role::Follower {
            machine.leader().map(str::to_owned)
        } else {
            None
        }
    }

    /// Where copying `server`'s WAL continues: the plain name of the newest file held.
    pub fn wal_cursor(&self, server: &str) -> Option<String> {
        self.wal_cursor.lock().get(server).cloned()
    }

    /// This node now holds `server`'s WAL file `plain` (and everything before it).
    pub fn advance_wal_cursor(&self, server: &str, plain: &str) {
        let mut cursors = self.wal_cursor.lock();
        let entry = cursors.entry(server.to_owned()).or_default();
        if plain > entry.as_str() {
            *entry = plain.to_owned();
        }
    }

    /// The backups of `server` this node deleted, oldest first.
    pub fn deleted(&self, shared: &Shared, server: &str) -> Vec<String> {
        let mut all = self.deleted.lock();
        all.entry(server.to_owned()).or_insert_with(|| read_deleted(shared, server)).clone()
    }

    /// Remembers that this node deleted `labels` of `server` (a delete, retention, or a
    /// delete copied from a peer), in memory and in the server's [`DELETED_FILE`].
    pub fn note_deleted(&self, shared: &Shared, server: &str, labels: &[String]) {
        if labels.is_empty() {
            return;
        }
        let mut all = self.deleted.lock();
        let list = all.entry(server.to_owned()).or_insert_with(|| read_deleted(shared, server));
        for l in labels {
            if !list.contains(l) {
                list.push(l.clone());
            }
        }
        let excess = list.len().saturating_sub(DELETED_KEPT);
        list.drain(..excess);
        let path = shared.base_dir().join(server).join(DELETED_FILE);
        let text: String = list.iter().map(|l| format!("{l}\n")).collect();
        let written = pgmoneta_storage::fsio::AtomicFile::create(&path).and_then(|mut f| {
            std::io::Write::write_all(&mut f, text.as_bytes())
                .map_err(|source| pgmoneta_storage::StorageError::Io { op: "writing", path: path.clone(), source })?;
            f.commit()
        });
        if let Err(e) = written {
            log::error!("cluster: [{server}] remembering deleted backups in {}: {e}", path.display());
        }
    }

    /// This node is copying backup `label` of `server` from a peer (`None`: no longer).
    pub fn set_copying(&self, server: &str, label: Option<&str>) {
        let mut copying = self.copying.lock();
        match label {
            Some(l) => copying.insert(server.to_owned(), l.to_owned()),
            None => copying.remove(server),
        };
    }

    /// The backups of `server` that peers heard within `cluster_takeover` are writing or
    /// copying: this node deletes none of them (nor their parents) meanwhile.
    pub fn busy_elsewhere(&self, server: &str) -> Vec<(String, String)> {
        let now = Instant::now();
        let peers = self.peers.lock();
        let mut out = Vec::new();
        for (name, p) in peers.iter() {
            if p.heard.is_none_or(|h| now.saturating_duration_since(h) >= self.timing.takeover) {
                continue;
            }
            for s in p.view.iter().flat_map(|v| v.servers.iter()).filter(|s| s.server == server) {
                out.extend(s.busy.iter().map(|b| (name.clone(), b.clone())));
            }
        }
        out
    }

    /// Records that `node` cannot be reached, and why.
    pub fn unreachable(&self, node: &str, problem: String) {
        if let Some(p) = self.peers.lock().get_mut(node) {
            p.problem = Some(problem);
        }
    }

    /// Takes a peer's view: kept for `cluster status`, and each server's entry goes to that
    /// server's role.
    pub fn record(&self, shared: &Shared, view: NodeView, now: Instant) {
        {
            let mut peers = self.peers.lock();
            let Some(p) = peers.get_mut(&view.node) else { return };
            p.problem = None;
            p.heard = Some(now);
            p.view = Some(view.clone());
        }
        let mut todo = Vec::new();
        {
            let mut roles = self.roles.lock();
            for s in &view.servers {
                if let Some(machine) = roles.get_mut(&s.server) {
                    let archive_end = s.archive_end.parse().unwrap_or(Lsn(0));
                    let event = Event::Peer { node: view.node.clone(), role: s.role, archive_end };
                    todo.push((s.server.clone(), machine.handle(now, event)));
                }
            }
        }
        for (server, actions) in todo {
            carry_out(shared, &server, actions);
        }
    }

    /// Brings each server's role up to date with what this node's WAL receiver hears from the
    /// server, lets time pass, and sets how far the slot may advance. Called every heartbeat.
    ///
    /// The receiver accepted on the slot is what makes this node active (the server decides);
    /// every message since renews the lease, at the time it arrived.
    pub fn tick(&self, shared: &Shared, now: Instant) {
        let mut todo = Vec::new();
        {
            let mut roles = self.roles.lock();
            for state in &shared.servers {
                let Some(machine) = roles.get_mut(&state.name) else { continue };
                let progress = state.stream.read().clone();
                let mut actions = machine.handle(now, Event::Archived(progress.flushed.load()));
                let streaming = state.wal_streaming.load(Ordering::SeqCst);
                let heard = if streaming { progress.heard() } else { None };
                match (heard, machine.role()) {
                    (Some(at), Role::Active) => actions.extend(machine.handle(at, Event::ServerHeard)),
                    (Some(at), _) if now.saturating_duration_since(at) <= self.timing.takeover => {
                        actions.extend(machine.handle(now, Event::SlotHeld));
                    }
                    (Some(_), _) => {}
                    (None, Role::Active) if !streaming => actions.extend(machine.handle(now, Event::ConnectionLost)),
                    (None, _) => {}
                }
                actions.extend(machine.handle(now, Event::Tick));
                todo.push((state.name.clone(), actions));
            }
        }
        for (server, actions) in todo {
            carry_out(shared, &server, actions);
        }
        self.hold_for_followers(shared, now);
    }

    /// For each server this node is active for, the position up to which the server may drop
    /// WAL: the lowest archive end among the peers heard within `cluster_takeover` (a peer with
    /// an empty archive copies from this node's archive and holds nothing). A node that takes
    /// over then finds in the slot everything after its own copy. A peer not heard from holds
    /// nothing: the server's disk does not fill up for a node that is gone.
    fn hold_for_followers(&self, shared: &Shared, now: Instant) {
        let peers = self.peers.lock();
        for state in &shared.servers {
            let mut hold = Lsn(0);
            if self.role(&state.name) == Some(Role::Active) {
                let live = peers
                    .values()
                    .filter(|p| p.heard.is_some_and(|h| now.saturating_duration_since(h) < self.timing.takeover));
                hold = live
                    .filter_map(|p| p.view.as_ref()?.servers.iter().find(|s| s.server == state.name))
                    .filter_map(|s| s.archive_end.parse::<Lsn>().ok())
                    .filter(|end| end.0 > 0)
                    .min()
                    .unwrap_or(Lsn(0));
            }
            state.wal_hold.store(hold);
        }
    }

    /// This node, its peers, and each one's view of every server, with each peer's lag against
    /// this node (`cluster status`, metrics).
    pub fn status(&self, shared: &Shared) -> ClusterStatusResponse {
        let now = Instant::now();
        let mine = self.view(shared);
        let mut r = ClusterStatusResponse {
            node: self.me.clone(),
            servers: mine.servers.iter().map(server_entry).collect(),
            peers: Vec::new(),
        };
        for (name, peer) in self.peers() {
            let since = peer.heard.map(|h| now.saturating_duration_since(h));
            let mut entry = ClusterPeer {
                node: name,
                address: peer.address.clone(),
                reachable: since.is_some_and(|s| s < self.timing.takeover),
                last_heard_ms: since.map(|s| s.as_millis() as u64),
                problem: peer.problem.clone(),
                servers: Vec::new(),
            };
            for theirs in peer.view.iter().flat_map(|v| v.servers.iter()) {
                let mut s = server_entry(theirs);
                if let Some(ours) = mine.servers.iter().find(|m| m.server == theirs.server) {
                    let end = |v: &str| v.parse::<Lsn>().unwrap_or(Lsn(0));
                    s.lag_bytes = Some(end(&ours.archive_end).0.saturating_sub(end(&theirs.archive_end).0));
                    let missing = ours.backups.iter().filter(|b| !theirs.backups.contains(b)).count();
                    s.missing_backups = Some(missing as u64);
                }
                entry.servers.push(s);
            }
            r.peers.push(entry);
        }
        r
    }

    /// This node's view, as its heartbeats carry it.
    /// Built at most once per half heartbeat, however many peers ask.
    pub fn view(&self, shared: &Shared) -> NodeView {
        let now = Instant::now();
        let mut last = self.last_view.lock();
        if let Some((at, view)) = last.as_ref() {
            if now.saturating_duration_since(*at) < self.timing.heartbeat / 2 {
                return view.clone();
            }
        }
        let view = self.build_view(shared);
        *last = Some((now, view.clone()));
        view
    }

    fn build_view(&self, shared: &Shared) -> NodeView {
        let roles = self.roles.lock();
        let servers = shared
            .servers
            .iter()
            .map(|state| {
                let progress = state.stream.read().clone();
                // Where the archive ends: what the receiver flushed, or the end of the newest
                // segment copied from the active node.
                let segment_size =
                    WalSegmentSize::new(state.facts.read().segment_size).unwrap_or(WalSegmentSize::DEFAULT);
                let copied = self
                    .wal_cursor(&state.name)
                    .and_then(|c| WalSegment::parse(&c, segment_size).ok())
                    .map_or(Lsn(0), |seg| seg.next().start_lsn(segment_size));
                let archive_end = progress.flushed.load().max(copied);
                let catalog = shared.repo.catalog(&state.name).map(Catalog::into_backups).unwrap_or_default();
                ServerView {
                    server: state.name.clone(),
                    role: roles.get(&state.name).map(RoleMachine::role),
                    timeline: progress.timeline.load(Ordering::Relaxed),
                    archive_end: archive_end.to_string(),
                    backups: catalog.iter().filter(|b| b.valid).map(|b| b.label.clone()).collect(),
                    busy: state
                        .backup_label
                        .lock()
                        .iter()
                        .cloned()
                        .chain(self.copying.lock().get(&state.name).cloned())
                        .collect(),
                }
            })
            .collect();
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        NodeView { node: self.me.clone(), time, servers }
    }
}

/// The labels a server's [`DELETED_FILE`] lists; none when it is missing or unreadable.
fn read_deleted(shared: &Shared, server: &str) -> Vec<String> {
    let path = shared.base_dir().join(server).join(DELETED_FILE);
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

fn role_word(role: Option<Role>) -> String {
    match role {
        Some(Role::Active) => "active",
        Some(Role::Follower) => "follower",
        Some(Role::Claiming) => "claiming",
        Some(Role::Fenced) => "fenced",
        None => "",
    }
    .to_owned()
}

fn server_entry(view: &ServerView) -> ClusterServer {
    ClusterServer {
        server: view.server.clone(),
        role: role_word(view.role),
        archive_end: view.archive_end.clone(),
        number_of_backups: view.backups.len() as u64,
        lag_bytes: None,
        missing_backups: None,
    }
}

/// Does what a role asks for `server`. Claiming needs nothing here: the WAL receiver asks
/// [`Cluster::may_stream`] before each attempt. Stopping writes ends the WAL stream and the
/// running backup at once (the stream's own lease has already stopped its writes).
fn carry_out(shared: &Shared, server: &str, actions: Vec<Action>) {
    for a in actions {
        match &a {
            Action::StopWriting => {
                log::warn!("cluster: server [{server}]: no longer sure to hold the slot; writing nothing for it");
                if let Some(state) = shared.server(server) {
                    crate::walservice::stop_stream(state);
                    if let Some(cancel) = state.backup_cancel.lock().as_ref() {
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
            }
            Action::Lead => log::info!("cluster: server [{server}]: this node holds the slot and is active"),
            Action::Follow(peer) => log::info!("cluster: server [{server}]: following {peer}"),
            Action::Claim => log::info!("cluster: server [{server}]: no active node heard; claiming the slot"),
        }
    }
}

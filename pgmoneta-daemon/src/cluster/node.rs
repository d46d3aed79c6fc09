//! This node in its cluster: the peers it hears from, and its role for each server.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pgmoneta_core::config::Config;
use pgmoneta_core::Lsn;
use pgmoneta_storage::catalog::Catalog;
use pgmoneta_wire::cluster::{NodeView, Role, ServerView};

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
        let peers = m
            .cluster_peers
            .0
            .iter()
            .map(|p| {
                let address = if p.host.contains(':') {
                    format!("[{}]:{}", p.host, p.port)
                } else {
                    format!("{}:{}", p.host, p.port)
                };
                (p.name.clone(), PeerState { address, ..PeerState::default() })
            })
            .collect();
        let roles = config.servers.iter().map(|s| (s.name.clone(), RoleMachine::new(&me, timing, now))).collect();
        Some(Cluster { me, timing, peers: Mutex::new(peers), roles: Mutex::new(roles) })
    }

    /// Whether `node` is a configured peer.
    pub fn is_peer(&self, node: &str) -> bool {
        self.peers.lock().contains_key(node)
    }

    /// What this node knows of each peer, by name.
    pub fn peers(&self) -> BTreeMap<String, PeerState> {
        self.peers.lock().clone()
    }

    /// This node's role for `server`.
    pub fn role(&self, server: &str) -> Option<Role> {
        self.roles.lock().get(server).map(RoleMachine::role)
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

    /// Records that `node` cannot be reached, and why.
    pub fn unreachable(&self, node: &str, problem: String) {
        if let Some(p) = self.peers.lock().get_mut(node) {
            p.problem = Some(problem);
        }
    }

    /// Takes a peer's view: kept for `cluster status`, and each server's entry goes to that
    /// server's role.
    pub fn record(&self, view: NodeView, now: Instant) {
        {
            let mut peers = self.peers.lock();
            let Some(p) = peers.get_mut(&view.node) else { return };
            p.problem = None;
            p.heard = Some(now);
            p.view = Some(view.clone());
        }
        let mut roles = self.roles.lock();
        for s in &view.servers {
            if let Some(machine) = roles.get_mut(&s.server) {
                let archive_end = s.archive_end.parse().unwrap_or(Lsn(0));
                let event = Event::Peer { node: view.node.clone(), role: s.role, archive_end };
                log_actions(&s.server, machine.handle(now, event));
            }
        }
    }

    /// Brings each server's role up to date with what this node's WAL receiver does: it holds
    /// the server's slot while it streams. Called every heartbeat.
    ///
    /// The receiver tries the slot on its own, all the time; until it asks the role first, the
    /// role follows it and is not ticked while this node does not stream (a tick would only
    /// announce a claim the receiver already makes).
    pub fn tick(&self, shared: &Shared, now: Instant) {
        let mut roles = self.roles.lock();
        for state in &shared.servers {
            let Some(machine) = roles.get_mut(&state.name) else { continue };
            let flushed = state.stream.read().flushed.load();
            log_actions(&state.name, machine.handle(now, Event::Archived(flushed)));
            let streaming = state.wal_streaming.load(Ordering::SeqCst);
            let events = match (streaming, machine.role()) {
                (true, Role::Active) => vec![Event::ServerHeard, Event::Tick],
                (true, _) => vec![Event::SlotHeld],
                (false, Role::Active) => vec![Event::ConnectionLost],
                (false, _) => Vec::new(),
            };
            for e in events {
                log_actions(&state.name, machine.handle(now, e));
            }
        }
    }

    /// This node's view, as its heartbeats carry it.
    pub fn view(&self, shared: &Shared) -> NodeView {
        let roles = self.roles.lock();
        let servers = shared
            .servers
            .iter()
            .map(|state| {
                let progress = state.stream.read().clone();
                let catalog = shared.repo.catalog(&state.name).map(Catalog::into_backups).unwrap_or_default();
                ServerView {
                    server: state.name.clone(),
                    role: roles.get(&state.name).map(RoleMachine::role),
                    timeline: progress.timeline.load(Ordering::Relaxed),
                    archive_end: progress.flushed.load().to_string(),
                    backups: catalog.iter().filter(|b| b.valid).map(|b| b.label.clone()).collect(),
                    busy: state.backup_label.lock().iter().cloned().collect(),
                }
            })
            .collect();
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        NodeView { node: self.me.clone(), time, servers }
    }
}

fn log_actions(server: &str, actions: Vec<Action>) {
    for a in actions {
        log::info!("cluster: [{server}] {a:?}");
    }
}

//! This node's role for one server, as a state machine without I/O: events in, actions out,
//! time passed in by the caller.
//!
//! PostgreSQL decides, not the nodes: a physical replication slot accepts one consumer at a
//! time, so the node streaming from the server's slot is its active node. The nodes only decide
//! *when to try*: a follower that has heard from no active node for `takeover` claims the slot
//! (the ones whose archives reach furthest first, one heartbeat apart), and the server says yes
//! to one of them at most.
//!
//! Fencing: an active node may write for the server (WAL, backups, retention) only while it
//! hears from the server on its replication connection: no message for `takeover` (a hung
//! process, a cut link) or a lost connection and it stops writing at once, before anything else
//! happens, and writes again only after holding the slot again. The server drops a silent
//! consumer after its `wal_sender_timeout`, which must be at least `takeover`: by the time a
//! peer can hold the slot, the node that held it has stopped writing by its own clock.
//!
//! | from      | event                                   | to        | action      |
//! |-----------|-----------------------------------------|-----------|-------------|
//! | Follower  | a peer heard active                     | Follower  | Follow(peer) when it changed |
//! | Follower  | tick: no active heard for takeover + rank × heartbeat | Claiming | Claim |
//! | Claiming  | slot held                               | Active    | Lead        |
//! | Claiming  | slot busy, connection lost              | Follower  | (retry after a heartbeat) |
//! | Claiming  | a peer heard active                     | Follower  | Follow(peer) |
//! | Active    | server heard                            | Active    | (lease renewed) |
//! | Active    | connection lost; tick: server silent for takeover | Fenced | StopWriting |
//! | Fenced    | tick after a heartbeat, no active peer  | Claiming  | Claim       |
//! | Fenced    | a peer heard active                     | Follower  | Follow(peer) |
//! | any       | slot held                               | Active    | Lead        |

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgmoneta_core::Lsn;
pub use pgmoneta_wire::cluster::Role;

/// The cluster's timing (`cluster_heartbeat`, `cluster_takeover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often nodes exchange views.
    pub heartbeat: Duration,
    /// How long without an active node before a follower claims; how long an active node
    /// writes without hearing from the server.
    pub takeover: Duration,
}

/// What happened, as far as this server's role is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer's heartbeat entry for this server.
    Peer {
        /// The peer.
        node: String,
        /// Its role, as it says.
        role: Option<Role>,
        /// Where its archive ends.
        archive_end: Lsn,
    },
    /// This node's archive now ends here.
    Archived(Lsn),
    /// The server accepted `START_REPLICATION` on the slot from this node.
    SlotHeld,
    /// The slot is in use by another connection.
    SlotBusy,
    /// The server sent something on this node's replication connection.
    ServerHeard,
    /// This node's replication connection failed or closed.
    ConnectionLost,
    /// Time passed.
    Tick,
}

/// What the node must do for the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Try to take the slot (start streaming from it).
    Claim,
    /// This node holds the slot: stream, take backups, apply retention, serve peers.
    Lead,
    /// Stop writing anything for the server now (WAL, backups, retention, deletes).
    StopWriting,
    /// Copy backups and WAL from this peer.
    Follow(String),
}

#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    role: Option<Role>,
    archive_end: Lsn,
}

/// The role of this node for one server.
#[derive(Clone, Debug)]
pub struct RoleMachine {
    me: String,
    timing: Timing,
    role: Role,
    since: Instant,
    peers: BTreeMap<String, Seen>,
    archive_end: Lsn,
    /// The last time an active node (a peer, or this one) was known to be active.
    active_seen: Instant,
    /// The last time the server was heard on this node's replication connection.
    server_heard: Option<Instant>,
    /// The peer followed.
    leader: Option<String>,
}

impl RoleMachine {
    /// A node named `me` starting as a follower at `now`: it waits a whole `takeover` for an
    /// active node before it claims.
    pub fn new(me: &str, timing: Timing, now: Instant) -> RoleMachine {
        RoleMachine {
            me: me.to_owned(),
            timing,
            role: Role::Follower,
            since: now,
            peers: BTreeMap::new(),
            archive_end: Lsn(0),
            active_seen: now,
            server_heard: None,
            leader: None,
        }
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer followed, when one is known.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Whether this node may write for the server at `now`: it is active and heard from the
    /// server within `takeover`. Checked before every write, not only on ticks, so a node
    /// resumed after a long pause writes nothing before its next tick.
    pub fn may_write(&self, now: Instant) -> bool {
        self.role == Role::Active
            && self.server_heard.is_some_and(|t| now.saturating_duration_since(t) <= self.timing.takeover)
    }

    fn enter(&mut self, role: Role, now: Instant) {
        if role != self.role {
            log::info!("cluster: {} {:?} -> {:?}", self.me, self.role, role);
        }
        self.role = role;
        self.since = now;
    }

    /// Whether a peer last heard at `at` still counts as heard: less than `takeover` ago.
    fn live(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.timing.takeover
    }

    /// The active peer heard from within `takeover`, if any (the one heard last).
    fn active_peer(&self, now: Instant) -> Option<&str> {
        self.peers
            .iter()
            .filter(|(_, s)| s.role == Some(Role::Active) && self.live(s.at, now))
            .max_by_key(|(_, s)| s.at)
            .map(|(n, _)| n.as_str())
    }

    /// How many live peers should claim before this node: those, not active themselves, whose
    /// archives reach further (by name on a tie).
    fn rank(&self, now: Instant) -> u32 {
        let mine = (self.archive_end, std::cmp::Reverse(self.me.as_str()));
        self.peers
            .iter()
            .filter(|(_, s)| s.role != Some(Role::Active) && self.live(s.at, now))
            .filter(|(n, s)| (s.archive_end, std::cmp::Reverse(n.as_str())) > mine)
            .count() as u32
    }

    fn follow(&mut self, peer: String, now: Instant, out: &mut Vec<Action>) {
        if self.role != Role::Follower {
            self.enter(Role::Follower, now);
        }
        if self.leader.as_deref() != Some(peer.as_str()) {
            self.leader = Some(peer.clone());
            out.push(Action::Follow(peer));
        }
    }

    /// Takes an event at `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Peer { node, role, archive_end } => {
                if node == self.me {
                    return out;
                }
                self.peers.insert(node.clone(), Seen { at: now, role, archive_end });
                if role == Some(Role::Active) {
                    self.active_seen = now;
                    match self.role {
                        // The server says who holds the slot: while it keeps answering this
                        // node, a peer calling itself active is out of date (it is about to
                        // fence itself).
                        Role::Active if self.may_write(now) => {}
                        Role::Active => {
                            out.push(Action::StopWriting);
                            self.follow(node, now, &mut out);
                        }
                        Role::Follower | Role::Claiming | Role::Fenced => self.follow(node, now, &mut out),
                    }
                }
            }
            Event::Archived(lsn) => self.archive_end = self.archive_end.max(lsn),
            Event::SlotHeld => {
                self.server_heard = Some(now);
                self.active_seen = now;
                self.leader = None;
                if self.role != Role::Active {
                    self.enter(Role::Active, now);
                    out.push(Action::Lead);
                }
            }
            Event::SlotBusy => {
                if matches!(self.role, Role::Claiming | Role::Fenced) {
                    self.enter(Role::Follower, now);
                }
            }
            Event::ServerHeard => {
                if self.role == Role::Active {
                    self.server_heard = Some(now);
                    self.active_seen = now;
                }
            }
            Event::ConnectionLost => match self.role {
                Role::Active => {
                    self.server_heard = None;
                    self.enter(Role::Fenced, now);
                    out.push(Action::StopWriting);
                }
                Role::Claiming => self.enter(Role::Follower, now),
                Role::Follower | Role::Fenced => {}
            },
            Event::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.role {
            Role::Active => {
                if !self.may_write(now) {
                    self.server_heard = None;
                    self.enter(Role::Fenced, now);
                    out.push(Action::StopWriting);
                }
            }
            Role::Follower => {
                if let Some(peer) = self.active_peer(now).map(str::to_owned) {
                    self.follow(peer, now, out);
                    return;
                }
                let wait = self.timing.takeover + self.timing.heartbeat * self.rank(now);
                // One claim per heartbeat at most, after a busy slot.
                let rested = now.saturating_duration_since(self.since) >= self.timing.heartbeat;
                if now.saturating_duration_since(self.active_seen) >= wait && rested {
                    self.enter(Role::Claiming, now);
                    out.push(Action::Claim);
                }
            }
            Role::Claiming => {}
            Role::Fenced => {
                if let Some(peer) = self.active_peer(now).map(str::to_owned) {
                    self.follow(peer, now, out);
                } else if now.saturating_duration_since(self.since) >= self.timing.heartbeat {
                    self.enter(Role::Claiming, now);
                    out.push(Action::Claim);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing { heartbeat: Duration::from_secs(1), takeover: Duration::from_secs(5) };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn active(node: &str, end: u64) -> Event {
        Event::Peer { node: node.into(), role: Some(Role::Active), archive_end: Lsn(end) }
    }

    fn follower(node: &str, end: u64) -> Event {
        Event::Peer { node: node.into(), role: Some(Role::Follower), archive_end: Lsn(end) }
    }

    #[test]
    fn a_lone_node_claims_after_takeover_and_leads_once_it_holds_the_slot() {
        let t0 = Instant::now();
        let mut m = RoleMachine::new("a", T, t0);
        assert!(m.handle(t0 + secs(4), Event::Tick).is_empty());
        assert_eq!(m.handle(t0 + secs(5), Event::Tick), [Action::Claim]);
        assert_eq!(m.role(), Role::Claiming);
        assert!(!m.may_write(t0 + secs(5)));
        assert_eq!(m.handle(t0 + secs(5), Event::SlotHeld), [Action::Lead]);
        assert!(m.may_write(t0 + secs(6)));
        m.handle(t0 + secs(9), Event::ServerHeard);
        assert!(m.may_write(t0 + secs(14)) && !m.may_write(t0 + secs(15)));
    }

    #[test]
    fn a_follower_of_a_live_active_node_never_claims() {
        let t0 = Instant::now();
        let mut m = RoleMachine::new("b", T, t0);
        assert_eq!(m.handle(t0, active("a", 100)), [Action::Follow("a".into())]);
        for s in 1..60 {
            assert!(m.handle(t0 + secs(s), active("a", 100 + s)).is_empty());
            assert!(m.handle(t0 + secs(s), Event::Tick).is_empty());
        }
        assert_eq!((m.role(), m.leader()), (Role::Follower, Some("a")));
    }

    #[test]
    fn when_the_active_node_goes_silent_the_furthest_archive_claims_first() {
        let t0 = Instant::now();
        let (mut b, mut c) = (RoleMachine::new("b", T, t0), RoleMachine::new("c", T, t0));
        b.handle(t0, active("a", 500));
        c.handle(t0, active("a", 500));
        b.handle(t0, Event::Archived(Lsn(300)));
        c.handle(t0, Event::Archived(Lsn(400)));
        for s in 1..=7 {
            let now = t0 + secs(s);
            b.handle(now, follower("c", 400));
            c.handle(now, follower("b", 300));
            let (bb, cc) = (b.handle(now, Event::Tick), c.handle(now, Event::Tick));
            match s {
                5 => assert_eq!((bb.as_slice(), cc.as_slice()), (&[][..], &[Action::Claim][..]), "at {s}s"),
                6 => assert_eq!((bb.as_slice(), cc.as_slice()), (&[Action::Claim][..], &[][..]), "at {s}s"),
                _ => assert!(bb.is_empty() && cc.is_empty(), "at {s}s: {bb:?} {cc:?}"),
            }
        }
        // The server gives the slot to c; b is told it is busy and follows c once it hears it.
        assert_eq!(c.handle(t0 + secs(6), Event::SlotHeld), [Action::Lead]);
        b.handle(t0 + secs(6), Event::SlotBusy);
        assert_eq!(b.role(), Role::Follower);
        assert_eq!(b.handle(t0 + secs(7), active("c", 400)), [Action::Follow("c".into())]);
    }

    #[test]
    fn a_busy_slot_is_tried_again_a_heartbeat_later() {
        let t0 = Instant::now();
        let mut m = RoleMachine::new("a", T, t0);
        assert_eq!(m.handle(t0 + secs(5), Event::Tick), [Action::Claim]);
        m.handle(t0 + secs(5), Event::SlotBusy);
        assert!(m.handle(t0 + secs(5), Event::Tick).is_empty());
        assert_eq!(m.handle(t0 + secs(6), Event::Tick), [Action::Claim]);
    }

    #[test]
    fn an_active_node_that_loses_the_server_stops_writing_at_once() {
        let t0 = Instant::now();
        let mut m = RoleMachine::new("a", T, t0);
        m.handle(t0, Event::SlotHeld);
        assert_eq!(m.handle(t0 + secs(2), Event::ConnectionLost), [Action::StopWriting]);
        assert!(!m.may_write(t0 + secs(2)));
        assert_eq!(m.role(), Role::Fenced);
        // It claims again a heartbeat later, unless a peer took over meanwhile.
        assert_eq!(m.handle(t0 + secs(3), Event::Tick), [Action::Claim]);
        let mut n = RoleMachine::new("a", T, t0);
        n.handle(t0, Event::SlotHeld);
        n.handle(t0 + secs(2), Event::ConnectionLost);
        assert_eq!(n.handle(t0 + secs(2), active("b", 0)), [Action::Follow("b".into())]);
    }

    #[test]
    fn a_node_resumed_after_a_pause_writes_nothing_and_steps_down() {
        let t0 = Instant::now();
        let mut m = RoleMachine::new("a", T, t0);
        m.handle(t0, Event::SlotHeld);
        m.handle(t0 + secs(1), Event::ServerHeard);
        // Stopped for 30 s: before any event is handled, writing is already refused.
        let resumed = t0 + secs(31);
        assert!(!m.may_write(resumed));
        assert_eq!(m.handle(resumed, active("b", 0)), [Action::StopWriting, Action::Follow("b".into())]);
        assert_eq!(m.role(), Role::Follower);
    }

    #[test]
    fn a_peer_still_calling_itself_active_does_not_unseat_the_slot_holder() {
        let t0 = Instant::now();
        let mut m = RoleMachine::new("b", T, t0);
        m.handle(t0, Event::SlotHeld);
        m.handle(t0 + secs(1), Event::ServerHeard);
        assert!(m.handle(t0 + secs(2), active("a", 0)).is_empty());
        assert!(m.may_write(t0 + secs(2)));
    }

    /// A slot arbiter and three nodes under random partitions, pauses and silences: at no
    /// moment may two nodes write, and whenever a node can reach the server for long enough,
    /// some node ends up writing.
    #[test]
    fn never_two_writers_under_random_faults() {
        const NODES: usize = 3;
        // The server drops a silent consumer after this (wal_sender_timeout >= takeover).
        let sender_timeout = T.takeover + secs(1);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        // How often the writer changed: the faults must really move the slot around.
        let mut handovers = 0;
        for round in 0..40 {
            let t0 = Instant::now();
            let names = ["a", "b", "c"];
            let mut nodes: Vec<RoleMachine> = names.iter().map(|n| RoleMachine::new(n, T, t0)).collect();
            // Who holds the slot, and when the server last heard from it.
            let mut holder: Option<(usize, Instant)> = None;
            let mut paused = [false; NODES];
            let mut cut_from_server = [false; NODES];
            let mut cut_from_peers = [false; NODES];
            let mut ever_wrote = false;
            let mut last_writer: Option<&str> = None;
            for step in 0..600u64 {
                let now = t0 + Duration::from_millis(step * 250);
                if step % 40 == 0 {
                    for i in 0..NODES {
                        paused[i] = next(6) == 0;
                        cut_from_server[i] = next(5) == 0;
                        cut_from_peers[i] = next(4) == 0;
                    }
                }
                // The server drops a consumer it has not heard from.
                if let Some((h, heard)) = holder {
                    if now.saturating_duration_since(heard) > sender_timeout {
                        holder = None;
                        if !paused[h] {
                            nodes[h].handle(now, Event::ConnectionLost);
                        }
                    }
                }
                for i in 0..NODES {
                    if paused[i] {
                        continue;
                    }
                    let mut actions = Vec::new();
                    if step % 4 == 0 {
                        for j in 0..NODES {
                            if j != i && !paused[j] && !cut_from_peers[i] && !cut_from_peers[j] {
                                let (role, end) = (nodes[j].role(), Lsn(j as u64));
                                let ev = Event::Peer { node: names[j].into(), role: Some(role), archive_end: end };
                                actions.extend(nodes[i].handle(now, ev));
                            }
                        }
                        actions.extend(nodes[i].handle(now, Event::Tick));
                    }
                    if let Some((h, _)) = holder {
                        if h == i && !cut_from_server[i] {
                            holder = Some((i, now));
                            nodes[i].handle(now, Event::ServerHeard);
                        }
                    }
                    for a in actions {
                        if a == Action::Claim {
                            if cut_from_server[i] {
                                nodes[i].handle(now, Event::ConnectionLost);
                            } else if holder.is_none_or(|(h, _)| h == i) {
                                holder = Some((i, now));
                                nodes[i].handle(now, Event::SlotHeld);
                            } else {
                                nodes[i].handle(now, Event::SlotBusy);
                            }
                        }
                    }
                }
                let writers: Vec<&str> = (0..NODES).filter(|&i| nodes[i].may_write(now)).map(|i| names[i]).collect();
                assert!(writers.len() <= 1, "round {round}, step {step}: {writers:?} all write");
                ever_wrote |= !writers.is_empty();
                if let Some(&w) = writers.first() {
                    if last_writer.is_some_and(|l| l != w) {
                        handovers += 1;
                    }
                    last_writer = Some(w);
                }
            }
            assert!(ever_wrote, "round {round}: no node ever wrote");
        }
        assert!(handovers >= 40, "only {handovers} handovers in 40 rounds");
    }
}

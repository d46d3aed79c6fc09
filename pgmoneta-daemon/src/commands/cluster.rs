//! `cluster status`: this node, its peers, and each one's view of every server.

use std::sync::Arc;
use std::time::Instant;

use pgmoneta_core::Lsn;
use pgmoneta_wire::cluster::{Role, ServerView};
use pgmoneta_wire::management::error_code as ec;
use pgmoneta_wire::management::response::{ClusterPeer, ClusterServer, ClusterStatusResponse};

use super::{fail, reply, Reply};
use crate::state::Shared;

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

pub(super) fn cluster_status(shared: &Arc<Shared>) -> Reply {
    let Some(cluster) = &shared.cluster else {
        return Err(fail(ec::CLUSTER_STATUS_OFF, "cluster status: this node is not in a cluster (cluster = 0)"));
    };
    let now = Instant::now();
    let mine = cluster.view(shared);
    let mut r = ClusterStatusResponse {
        node: cluster.me.clone(),
        servers: mine.servers.iter().map(server_entry).collect(),
        peers: Vec::new(),
    };
    for (name, peer) in cluster.peers() {
        let since = peer.heard.map(|h| now.saturating_duration_since(h));
        let mut entry = ClusterPeer {
            node: name,
            address: peer.address.clone(),
            reachable: since.is_some_and(|s| s <= cluster.timing.takeover),
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
    reply(&r)
}

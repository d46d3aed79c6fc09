//! `cluster status`: this node, its peers, and each one's view of every server; and where a
//! command that writes a server's repository runs.

use std::sync::Arc;

use pgmoneta_wire::cluster::Role;
use pgmoneta_wire::management::request::{self, ServerRequest};
use pgmoneta_wire::management::{error_code as ec, Document};

use super::{fail, reply, Failure, Reply};
use crate::cluster::link;
use crate::state::Shared;

pub(super) fn cluster_status(shared: &Arc<Shared>) -> Reply {
    let Some(cluster) = &shared.cluster else {
        return Err(fail(ec::CLUSTER_STATUS_OFF, "cluster status: this node is not in a cluster (cluster = 0)"));
    };
    reply(&cluster.status(shared))
}

/// Where a command that writes a server's repository runs, in a cluster.
pub(super) enum Routed {
    /// The active node ran it; this is its reply.
    Elsewhere(Document),
    /// It cannot run here, nor be sent on.
    Refused(Failure),
}

/// `None` when the command runs here: no cluster, a server this node does not know (the
/// command says so itself), or this node is active for it and may write.
pub(super) fn route(shared: &Arc<Shared>, doc: &Document, may_forward: bool) -> Option<Routed> {
    let cluster = shared.cluster.as_ref()?;
    let server = request::parse::<ServerRequest>(&doc.request).server?;
    shared.server(&server)?;
    if cluster.may_write(&server) {
        return None;
    }
    let command = doc.header.command.name();
    let active = cluster.active_node(&server).filter(|n| *n != cluster.me);
    match active {
        Some(node) if may_forward => match link::forward(shared, cluster, &node, doc) {
            Ok(reply) => Some(Routed::Elsewhere(reply)),
            Err(e) => Some(Routed::Refused(fail(
                ec::CLUSTER_FORWARD,
                format!("{command}: server [{server}] is served by node {node}, which could not be reached: {e}"),
            ))),
        },
        _ => {
            let role = cluster.role(&server).map_or("unknown", role_name);
            Some(Routed::Refused(fail(
                ec::CLUSTER_NOT_ACTIVE,
                format!(
                    "{command}: server [{server}]: this node ({}) is {role} for it, and no active node is known; \
                     try again in a few seconds",
                    cluster.me
                ),
            )))
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Active => "active",
        Role::Follower => "a follower",
        Role::Claiming => "claiming the slot",
        Role::Fenced => "fenced",
    }
}

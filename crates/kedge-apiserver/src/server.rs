//! The API server: configuration, request dispatch, health and version, and
//! the TLS listener that turns client certificates into identities.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Router;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use kedge_api::ApiError;
use kedge_pki::Identity;
use kedge_store::{SqliteStore, Store};
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::auth::{self, Authenticator};
use crate::ipalloc::Cidr;
use crate::negotiate::{self, Output};
use crate::path::{self, Route};
use crate::{discovery, handler};

pub type Body = axum::body::Body;

/// What `/version` reports.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    /// e.g. `v1.33.0+kedge.1`
    pub git_version: String,
    pub git_commit: String,
    pub build_date: String,
}

impl VersionInfo {
    fn to_json(&self) -> serde_json::Value {
        let v = self.git_version.trim_start_matches('v');
        let mut parts = v.split(['.', '+']);
        let major = parts.next().unwrap_or("1");
        let minor = parts.next().unwrap_or("0");
        json!({
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "minCompatibilityMajor": major,
            "minCompatibilityMinor": minor,
            "gitVersion": self.git_version,
            "gitCommit": self.git_commit,
            "gitTreeState": "clean",
            "buildDate": self.build_date,
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
        })
    }
}

/// API server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub service_cidr: Cidr,
    pub cluster_cidr: Cidr,
    /// The `--token` bearer token (authenticates as an admin).
    pub token: Option<String>,
    pub version: VersionInfo,
    /// Address other hosts reach this server at (the `kubernetes` endpoints).
    pub advertise_address: String,
    pub port: u16,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Watch length when the client names no `timeoutSeconds`.
    pub watch_timeout: Duration,
    /// The cluster CA published in every namespace as `kube-root-ca.crt`.
    pub root_ca_pem: String,
    /// Signs and verifies service-account tokens; `None` serves no
    /// `serviceaccounts/token` and accepts no service-account JWTs.
    pub service_account_key: Option<Arc<kedge_pki::ServiceAccountKey>>,
    /// `tolerationSeconds` of the `node.kubernetes.io/not-ready:NoExecute`
    /// toleration admission adds to pods (kube-apiserver's
    /// `--default-not-ready-toleration-seconds`; kedge: 20, upstream: 300).
    pub default_not_ready_toleration_seconds: i64,
    /// Likewise for `node.kubernetes.io/unreachable:NoExecute`.
    pub default_unreachable_toleration_seconds: i64,
}

/// The API server: shared by every connection.
pub struct ApiServer {
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) config: Config,
    pub(crate) authn: Authenticator,
    /// Serialises ClusterIP/NodePort allocation.
    pub(crate) alloc_lock: tokio::sync::Mutex<()>,
    /// Resources added by CustomResourceDefinitions.
    pub(crate) crds: crate::crd::CrdRegistry,
    /// TLS to node agents for pods/log, exec, attach, portforward (`nodeproxy`).
    pub(crate) kubelet_client: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// Where joining nodes' certificates come from (`kedge agent`).
    pub(crate) node_join: std::sync::OnceLock<crate::join::NodeJoin>,
    ready: AtomicBool,
}

impl ApiServer {
    pub fn new(store: Arc<SqliteStore>, config: Config) -> Arc<Self> {
        let authn = Authenticator {
            token: config.token.clone(),
            service_accounts: config
                .service_account_key
                .clone()
                .map(|k| Arc::new(crate::tokens::ServiceAccountTokens::new(k, store.clone()))),
        };
        Arc::new(ApiServer {
            store,
            config,
            authn,
            alloc_lock: tokio::sync::Mutex::new(()),
            crds: Default::default(),
            kubelet_client: std::sync::OnceLock::new(),
            node_join: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
        })
    }

    /// Create the default namespaces and the `kubernetes` Service, start
    /// serving custom resources and the in-process controllers of the API
    /// server itself; after this `/readyz` answers 200.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), ApiError> {
        crate::bootstrap::run(self).await?;
        crate::crd::sync(self).await?;
        crate::lifecycle::prepare(self).await?;
        tokio::spawn(crate::crd::run(self.clone()));
        tokio::spawn(crate::lifecycle::run(self.clone()));
        tokio::spawn(crate::nodeipam::run(self.clone()));
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Every served resource: built-in, then custom.
    pub(crate) fn resources(&self) -> Vec<&'static kedge_api::ResourceInfo> {
        let mut all: Vec<&'static kedge_api::ResourceInfo> = kedge_api::RESOURCES.iter().collect();
        all.extend(self.crds.all().iter().map(|c| c.ri));
        all
    }

    /// The resource at these URL coordinates, built-in or custom.
    pub(crate) fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static kedge_api::ResourceInfo> {
        kedge_api::registry::lookup(group, version, plural)
            .or_else(|| self.crds.get(group, version, plural).map(|c| c.ri))
    }

    /// Let nodes join (`kedge agent`): their certificates are signed by the
    /// CAs in this directory.
    pub fn set_node_join(&self, join: crate::join::NodeJoin) {
        let _ = self.node_join.set(join);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The HTTP router (no TLS): every path goes through `dispatch`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }

    /// Serve HTTPS on `listener` until `shutdown` resolves.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let router = self.router();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                serve_connection(acceptor, router, tcp, peer).await;
            });
        }
    }
}

async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity: Option<Identity> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| kedge_pki::identity_from_cert(c.as_ref()).ok());
    let svc = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
        if let Some(id) = &identity {
            req.extensions_mut().insert(id.clone());
        }
        req
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc))
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn dispatch(State(srv): State<Arc<ApiServer>>, req: Request<Body>) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = route(srv, req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

async fn route(srv: Arc<ApiServer>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == crate::join::CACERTS_PATH {
        return crate::join::cacerts(&srv, req.method());
    }
    let identity = req.extensions().get::<Identity>().cloned();
    let user = match srv.authn.authenticate(req.headers(), identity.as_ref()) {
        Ok(u) => u,
        Err(e) => return negotiate::error_response(&e),
    };
    if auth::is_public_path(&path) {
        return health(&srv, &path, req.uri().query());
    }
    let Some(user) = user else {
        return negotiate::error_response(&ApiError::unauthorized());
    };
    let user = match auth::impersonate(user, req.headers()) {
        Ok(u) => u,
        Err(e) => return negotiate::error_response(&e),
    };
    if crate::join::serves(&path) {
        return crate::join::credentials(srv, user, req).await;
    }
    let route = path::parse(&path);
    if !matches!(route, Route::Resource(_)) && req.method() != Method::GET {
        return negotiate::error_response(&ApiError::method_not_allowed());
    }
    if let Some(r) = crate::openapi::handle(&path, req.uri().query(), req.headers(), &srv.crds) {
        return r;
    }
    match route {
        Route::LegacyRoot => {
            let addr = format!("{}:{}", srv.config.advertise_address, srv.config.port);
            discovery::legacy_root(req.headers(), &srv.resources(), &addr)
        }
        Route::GroupsRoot => discovery::groups_root(req.headers(), &srv.resources()),
        Route::Group(g) => discovery::group(&srv.resources(), &g)
            .unwrap_or_else(|| negotiate::error_response(&ApiError::not_found_path())),
        Route::GroupVersion { group, version } => {
            discovery::group_version(&srv.resources(), &group, &version)
                .unwrap_or_else(|| negotiate::error_response(&ApiError::not_found_path()))
        }
        Route::Resource(rp) if crate::nodeproxy::serves(&rp) => {
            crate::nodeproxy::handle(srv, user, rp, req).await
        }
        Route::Resource(rp) => handler::handle(srv, user, rp, req).await,
        Route::Other => negotiate::error_response(&ApiError::not_found_path()),
    }
}

/// `/healthz`, `/livez`, `/readyz` (with `?verbose` and per-check paths) and `/version`.
fn health(srv: &ApiServer, path: &str, query: Option<&str>) -> Response<Body> {
    if path.trim_end_matches('/') == "/version" {
        return negotiate::respond(StatusCode::OK, Output::Json, &srv.config.version.to_json());
    }
    let (endpoint, only) = match path.trim_start_matches('/').split_once('/') {
        Some((e, c)) => (e, Some(c)),
        None => (path.trim_start_matches('/'), None),
    };
    let datastore_ok = srv.store.get("/kedge/health-probe").is_ok();
    let mut checks: Vec<(&str, bool)> =
        vec![("ping", true), ("log", true), ("datastore", datastore_ok)];
    if endpoint == "readyz" || endpoint == "healthz" {
        checks.push(("poststarthook/bootstrap", srv.is_ready()));
    }
    if let Some(c) = only {
        return match checks.iter().find(|(n, _)| *n == c) {
            Some((_, true)) => text(StatusCode::OK, "ok".into()),
            Some((_, false)) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {c} failed"),
            ),
            None => negotiate::error_response(&ApiError::not_found_path()),
        };
    }
    let ok = checks.iter().all(|(_, ok)| *ok);
    let verbose = query.is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if verbose || !ok {
        let mut s = String::new();
        for (n, good) in &checks {
            if *good {
                s.push_str(&format!("[+]{n} ok\n"));
            } else {
                s.push_str(&format!("[-]{n} failed: reason withheld\n"));
            }
        }
        if ok {
            s.push_str(&format!("{endpoint} check passed\n"));
        } else {
            s.push_str(&format!("{endpoint} check failed\n"));
        }
        return text(status, s);
    }
    text(status, "ok".into())
}

fn text(status: StatusCode, s: String) -> Response<Body> {
    let mut r = Response::new(Body::from(s));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

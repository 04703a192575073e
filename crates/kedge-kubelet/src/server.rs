//! The node agent's HTTPS API, as the kubelet's on port 10250
//! (`pkg/kubelet/server/server.go`): what the API server proxies `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward` to.
//!
//! | path | what |
//! | --- | --- |
//! | `GET /healthz` | `ok` |
//! | `GET /containerLogs/{ns}/{pod}/{container}` | the container's log ([`crate::logs`]); query: `follow`, `previous`, `tailLines` (or the old `tail`), `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes` |
//! | `GET\|POST /exec/{ns}/{pod}[/{uid}]/{container}` | query: `command` (repeated), `input`, `output`, `error`, `tty` (`1` = on) |
//! | `GET\|POST /attach/{ns}/{pod}[/{uid}]/{container}` | query: `input`, `output`, `error`, `tty` |
//! | `GET\|POST /portForward/{ns}/{pod}[/{uid}]` | ports in the SPDY stream headers, or `port` in the query (WebSocket) |
//!
//! Exec, attach and port-forward ask CRI for a streaming URL (containerd serves
//! them on its own loopback streaming server), then proxy the client's upgrade
//! request to it and splice both connections ([`proxy`]). A WebSocket request
//! whose protocol the runtime does not speak (`v5.channel.k8s.io`, port-forward
//! SPDY tunnelled over WebSocket) is handed to a [`StreamTranslator`] instead:
//! the one place is marked `STREAM TRANSLATION HOOK` below.
//!
//! Pods are looked up through [`PodDirectory`], which the pod manager implements.
//! Errors answer with a `Status` JSON body carrying upstream's kubelet message and
//! status code; the API server turns them into its own `Status` as upstream's
//! response checker does.
//!
//! Only the API server may call: TLS is [`kedge_pki::kubelet_server_tls_config`].

mod proxy;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::cri::api::{AttachRequest, ContainerState, ExecRequest, PortForwardRequest};
use crate::cri::RuntimeService;
use crate::logs::{self, LogOptions, LogOptionsError};

pub use proxy::{is_upgrade_request, proxy_upgrade, ProxyError};

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response of the agent.
pub type AgentBody = BoxBody<Bytes, BoxError>;

/// What the agent knows about one of its pods.
#[derive(Debug, Clone)]
pub struct PodEntry {
    /// The pod with the status the agent computed for it: `status.containerStatuses`
    /// (and init/ephemeral ones) with `containerID` (`containerd://<id>`), `state`
    /// and `lastState`, as the agent reports them to the API server.
    pub pod: Arc<Pod>,
    /// The CRI id of the pod's current sandbox, when it has one.
    pub sandbox_id: Option<String>,
}

/// The agent's pods, by namespace and name: implemented by the pod manager.
pub trait PodDirectory: Send + Sync + 'static {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodEntry>;
}

/// Which streaming call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

/// A boxed response future, for [`StreamTranslator`].
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<AgentBody>> + Send>>;

/// Serves streaming requests whose protocol the runtime's streaming server does
/// not speak, by translating them (WebSocket `v5.channel.k8s.io` to SPDY, SPDY
/// tunnelled over WebSocket for port-forward).
pub trait StreamTranslator: Send + Sync + 'static {
    /// Whether this request (its upgrade headers) needs translation.
    fn wants_translation(&self, headers: &HeaderMap) -> bool;
    /// Answers the client's request, talking to the runtime at `backend_url`
    /// (the URL CRI returned).
    fn translate(
        &self,
        req: Request<Incoming>,
        kind: StreamKind,
        backend_url: String,
    ) -> ResponseFuture;
}

/// The node agent's API server.
pub struct AgentServer<R> {
    runtime: Arc<R>,
    pods: Arc<dyn PodDirectory>,
    translator: Option<Arc<dyn StreamTranslator>>,
}

impl<R: RuntimeService + 'static> AgentServer<R> {
    pub fn new(runtime: Arc<R>, pods: Arc<dyn PodDirectory>) -> Self {
        AgentServer {
            runtime,
            pods,
            translator: None,
        }
    }

    /// Hand WebSocket requests the runtime cannot serve to `translator`.
    pub fn with_translator(mut self, translator: Arc<dyn StreamTranslator>) -> Self {
        self.translator = Some(translator);
        self
    }

    /// Serves HTTPS on `listener` with `tls` (from
    /// [`kedge_pki::kubelet_server_tls_config`]) until `shutdown` resolves.
    /// Connections already open (a follow, an exec) finish on their own.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "agent API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let server = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move { server.connection(acceptor, tcp, peer).await });
        }
    }

    async fn connection(
        self: Arc<Self>,
        acceptor: tokio_rustls::TlsAcceptor,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "agent API: TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "agent API: TLS handshake timed out");
                return;
            }
        };
        let service = hyper::service::service_fn(move |req| {
            let server = self.clone();
            async move { Ok::<_, Infallible>(server.handle(req).await) }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        if let Err(e) = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), service)
            .await
        {
            tracing::debug!(%peer, error = %e, "agent API: connection ended with an error");
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<AgentBody> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = match self.route(req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "agent API request");
        response
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<AgentBody>, AgentError> {
        let segments: Vec<String> = req
            .uri()
            .path()
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().clone();
        let streaming = method == Method::GET || method == Method::POST;
        match segments.as_slice() {
            ["healthz"] if method == Method::GET => Ok(text(StatusCode::OK, "ok")),
            ["containerLogs", ns, pod, container] if method == Method::GET => {
                self.container_logs(ns, pod, container, req.uri().query())
                    .await
            }
            ["exec", ns, pod, container] if streaming => {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                self.exec(req, &ns, &pod, None, &container).await
            }
            ["exec", ns, pod, uid, container] if streaming => {
                let (ns, pod, uid, container) = (
                    ns.to_string(),
                    pod.to_string(),
                    uid.to_string(),
                    container.to_string(),
                );
                self.exec(req, &ns, &pod, Some(&uid), &container).await
            }
            ["attach", ns, pod, container] if streaming => {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                self.attach(req, &ns, &pod, None, &container).await
            }
            ["attach", ns, pod, uid, container] if streaming => {
                let (ns, pod, uid, container) = (
                    ns.to_string(),
                    pod.to_string(),
                    uid.to_string(),
                    container.to_string(),
                );
                self.attach(req, &ns, &pod, Some(&uid), &container).await
            }
            ["portForward", ns, pod] if streaming => {
                let (ns, pod) = (ns.to_string(), pod.to_string());
                self.port_forward(req, &ns, &pod, None).await
            }
            ["portForward", ns, pod, uid] if streaming => {
                let (ns, pod, uid) = (ns.to_string(), pod.to_string(), uid.to_string());
                self.port_forward(req, &ns, &pod, Some(&uid)).await
            }
            ["healthz" | "containerLogs" | "exec" | "attach" | "portForward", ..] if !streaming => {
                Err(AgentError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method {method} is not allowed here"),
                ))
            }
            _ => Err(AgentError::new(StatusCode::NOT_FOUND, "404 page not found")),
        }
    }

    async fn container_logs(
        &self,
        ns: &str,
        pod_name: &str,
        container: &str,
        query: Option<&str>,
    ) -> Result<Response<AgentBody>, AgentError> {
        for (value, what) in [
            (pod_name, "podID"),
            (container, "container name"),
            (ns, "podNamespace"),
        ] {
            if value.is_empty() {
                return Err(AgentError::bad_request(format!("Missing {what}.")));
            }
        }
        let query = legacy_tail(query);
        let opts = LogOptions::from_query(query.as_deref(), jiff::Timestamp::now()).map_err(
            |e| match e {
                LogOptionsError::Decode(m) => {
                    AgentError::bad_request(format!("Unable to decode query: {m}"))
                }
                LogOptionsError::Invalid(_) => AgentError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Invalid request: {e}"),
                ),
            },
        )?;
        let entry = self.pods.pod(ns, pod_name).ok_or_else(|| {
            AgentError::new(
                StatusCode::NOT_FOUND,
                format!("pod {pod_name:?} does not exist"),
            )
        })?;
        if !has_container(&entry.pod, container) {
            return Err(AgentError::new(
                StatusCode::NOT_FOUND,
                format!("container {container:?} not found in pod {pod_name:?}"),
            ));
        }
        let container_id = log_container_id(&entry.pod, container, opts.previous)
            .map_err(AgentError::bad_request)?;
        let status = self
            .runtime
            .container_status(&container_id, false)
            .await
            .map_err(|e| {
                AgentError::bad_request(format!(
                    "failed to get container status {container_id:?}: {e}"
                ))
            })?
            .status
            .ok_or_else(|| {
                AgentError::bad_request(format!("failed to get container status {container_id:?}"))
            })?;
        let log_path = std::path::PathBuf::from(&status.log_path);
        if let Err(e) = tokio::fs::metadata(&log_path).await {
            return Err(AgentError::bad_request(format!(
                "failed to open log file {:?}: {e}",
                status.log_path
            )));
        }

        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let running = || {
                let runtime = runtime.clone();
                let id = container_id.clone();
                async move {
                    match runtime.container_status(&id, false).await {
                        Ok(s) => s
                            .status
                            .is_some_and(|s| s.state == ContainerState::ContainerRunning as i32),
                        Err(_) => false,
                    }
                }
            };
            if let Err(e) = logs::read_logs(&log_path, &opts, &tx, running).await {
                tracing::warn!(path = %log_path.display(), error = %e, "reading container log failed");
            }
        });
        let stream = futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok::<_, BoxError>(Frame::data(b))))
        });
        let mut response = Response::new(StreamBody::new(stream).boxed());
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(response)
    }

    async fn exec(
        &self,
        req: Request<Incoming>,
        ns: &str,
        pod_name: &str,
        uid: Option<&str>,
        container: &str,
    ) -> Result<Response<AgentBody>, AgentError> {
        let opts = StreamOptions::from_query(req.uri().query())?;
        let entry = self.lookup_stream_pod(ns, pod_name)?;
        let container_id = running_container_id(&entry.pod, uid, container)?;
        let command = query_values(req.uri().query(), "command");
        let url = self
            .runtime
            .exec(ExecRequest {
                container_id,
                cmd: command,
                tty: opts.tty,
                stdin: opts.stdin,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map_err(AgentError::from_cri)?;
        self.stream(req, StreamKind::Exec, url).await
    }

    async fn attach(
        &self,
        req: Request<Incoming>,
        ns: &str,
        pod_name: &str,
        uid: Option<&str>,
        container: &str,
    ) -> Result<Response<AgentBody>, AgentError> {
        let opts = StreamOptions::from_query(req.uri().query())?;
        let entry = self.lookup_stream_pod(ns, pod_name)?;
        let container_id = running_container_id(&entry.pod, uid, container)?;
        let url = self
            .runtime
            .attach(AttachRequest {
                container_id,
                stdin: opts.stdin,
                tty: opts.tty,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map_err(AgentError::from_cri)?;
        self.stream(req, StreamKind::Attach, url).await
    }

    async fn port_forward(
        &self,
        req: Request<Incoming>,
        ns: &str,
        pod_name: &str,
        uid: Option<&str>,
    ) -> Result<Response<AgentBody>, AgentError> {
        let ports = if proxy::is_websocket_request(req.headers()) {
            websocket_ports(req.uri().query()).map_err(AgentError::bad_request)?
        } else {
            Vec::new()
        };
        let entry = self.lookup_stream_pod(ns, pod_name)?;
        let pod_uid = entry.pod.metadata.uid.as_deref().unwrap_or_default();
        if uid.is_some_and(|u| u != pod_uid) {
            return Err(AgentError::new(StatusCode::NOT_FOUND, "pod not found"));
        }
        let full_name = format!("{pod_name}_{ns}");
        let sandbox_id = entry
            .sandbox_id
            .clone()
            .ok_or_else(|| AgentError::internal(format!("pod not found ({full_name:?})")))?;
        let url = self
            .runtime
            .port_forward(PortForwardRequest {
                pod_sandbox_id: sandbox_id,
                port: ports,
            })
            .await
            .map_err(AgentError::from_cri)?;
        self.stream(req, StreamKind::PortForward, url).await
    }

    fn lookup_stream_pod(&self, ns: &str, pod_name: &str) -> Result<PodEntry, AgentError> {
        self.pods
            .pod(ns, pod_name)
            .ok_or_else(|| AgentError::new(StatusCode::NOT_FOUND, "pod does not exist"))
    }

    /// Proxies the client's upgrade to the runtime's streaming URL.
    async fn stream(
        &self,
        req: Request<Incoming>,
        kind: StreamKind,
        url: String,
    ) -> Result<Response<AgentBody>, AgentError> {
        // ==== STREAM TRANSLATION HOOK ====
        // The one place where a request is handed to the streaming translator:
        // WebSocket protocols containerd's streaming server does not speak
        // (v5.channel.k8s.io, SPDY tunnelled over WebSocket for port-forward).
        if let Some(translator) = &self.translator {
            if translator.wants_translation(req.headers()) {
                return Ok(translator.translate(req, kind, url).await);
            }
        }
        // ==== end of hook; everything else is proxied as it came ====
        if !is_upgrade_request(req.headers()) {
            return Err(AgentError::bad_request("Upgrade request required"));
        }
        proxy_upgrade(req, &url).await.map_err(|e| {
            tracing::warn!(%url, error = %e, ?kind, "proxying to the runtime's streaming server failed");
            AgentError::internal(e.to_string())
        })
    }
}

/// `exec`/`attach` options as the kubelet reads them (`remotecommand.NewOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamOptions {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl StreamOptions {
    fn from_query(query: Option<&str>) -> Result<Self, AgentError> {
        let on = |key: &str| query_values(query, key).first().is_some_and(|v| v == "1");
        let tty = on("tty");
        let opts = StreamOptions {
            stdin: on("input"),
            stdout: on("output"),
            // A TTY merges stderr into stdout.
            stderr: on("error") && !tty,
            tty,
        };
        if !opts.stdin && !opts.stdout && !opts.stderr {
            return Err(AgentError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(opts)
    }
}

/// Ports of a WebSocket port-forward (`portforward.NewV4Options`).
fn websocket_ports(query: Option<&str>) -> Result<Vec<i32>, String> {
    let values = query_values(query, "port");
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in &values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("unable to parse {value:?} as a port: {e}"))?;
            if port < 1 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(i32::from(port));
        }
    }
    Ok(ports)
}

/// Every value of `key` in a query string, decoded, in order.
fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The old `tail` parameter: `tailLines`, with `all` meaning no limit.
fn legacy_tail(query: Option<&str>) -> Option<String> {
    let tail = query_values(query, "tail").into_iter().next();
    let Some(tail) = tail.filter(|t| !t.is_empty()) else {
        return query.map(str::to_owned);
    };
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "tail" && k != "tailLines" {
            out.append_pair(&k, &v);
        }
    }
    if tail != "all" {
        out.append_pair("tailLines", &tail);
    }
    Some(out.finish())
}

fn percent_decode(segment: &str) -> String {
    // form_urlencoded also turns '+' into ' ', which a path does not.
    let protected = segment.replace('+', "%2B");
    form_urlencoded::parse(format!("x={protected}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| segment.to_owned())
}

/// Containers of every kind, in upstream's `VisitContainers` order.
fn container_names(pod: &Pod) -> Vec<&str> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let mut names: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    names.extend(spec.containers.iter().map(|c| c.name.as_str()));
    names.extend(
        spec.ephemeral_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str()),
    );
    names
}

fn has_container(pod: &Pod, name: &str) -> bool {
    container_names(pod).contains(&name)
}

fn container_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    [
        status.container_statuses.as_ref(),
        status.init_container_statuses.as_ref(),
        status.ephemeral_container_statuses.as_ref(),
    ]
    .into_iter()
    .flatten()
    .flatten()
    .find(|s| s.name == name)
}

/// `docker://x`, `containerd://x` → `x`.
fn strip_runtime(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// The container whose log to read, as upstream's `validateContainerLogStatus`.
fn log_container_id(pod: &Pod, container: &str, previous: bool) -> Result<String, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = container_status(pod, container)
        .ok_or_else(|| format!("container {container:?} in pod {pod_name:?} is not available"))?;
    let state = status.state.clone().unwrap_or_default();
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let last_id = last
        .and_then(|t| t.container_id.as_deref())
        .filter(|id| !id.is_empty());
    let terminated_msg = || format!("container {container:?} in pod {pod_name:?} is terminated");
    let id = if previous {
        last_id.ok_or_else(|| {
            format!("previous terminated container {container:?} in pod {pod_name:?} not found")
        })?
    } else if state.running.is_some() {
        status.container_id.as_deref().unwrap_or_default()
    } else if let Some(terminated) = &state.terminated {
        match terminated
            .container_id
            .as_deref()
            .filter(|id| !id.is_empty())
        {
            Some(id) => id,
            None => last_id.ok_or_else(terminated_msg)?,
        }
    } else if last.is_some() {
        last_id.ok_or_else(terminated_msg)?
    } else if let Some(waiting) = &state.waiting {
        let why = match waiting.reason.as_deref().unwrap_or_default() {
            "ErrImagePull" => "image can't be pulled".to_owned(),
            "ImagePullBackOff" => "trying and failing to pull image".to_owned(),
            other => other.to_owned(),
        };
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        ));
    } else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
        ));
    };
    let id = strip_runtime(id);
    if id.is_empty() {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
        ));
    }
    Ok(id.to_owned())
}

/// The running container for exec/attach (upstream's `findContainer`: only
/// running containers of the running pod count).
fn running_container_id(
    pod: &Pod,
    uid: Option<&str>,
    container: &str,
) -> Result<String, AgentError> {
    let not_found = || AgentError::internal(format!("container not found ({container:?})"));
    if uid.is_some_and(|u| Some(u) != pod.metadata.uid.as_deref()) {
        return Err(not_found());
    }
    let status = container_status(pod, container).ok_or_else(not_found)?;
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
    match status.container_id.as_deref().map(strip_runtime) {
        Some(id) if running && !id.is_empty() => Ok(id.to_owned()),
        _ => Err(not_found()),
    }
}

/// An error answer: status code and message, sent as a `Status` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError {
    pub code: StatusCode,
    pub message: String,
}

impl AgentError {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        AgentError {
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// As upstream's `streaming.WriteError`: NotFound 404, ResourceExhausted 429, else 500.
    fn from_cri(e: crate::cri::CriError) -> Self {
        let code = match e.code() {
            Some(tonic::Code::NotFound) => StatusCode::NOT_FOUND,
            Some(tonic::Code::ResourceExhausted) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(code, e.to_string())
    }

    fn into_response(self) -> Response<AgentBody> {
        let reason = match self.code {
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::UNPROCESSABLE_ENTITY => "Invalid",
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
            StatusCode::INTERNAL_SERVER_ERROR => "InternalError",
            _ => "",
        };
        let status = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": reason,
            "code": self.code.as_u16(),
        });
        let mut response = Response::new(full(status.to_string()));
        *response.status_mut() = self.code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn full(body: impl Into<Bytes>) -> AgentBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn text(code: StatusCode, body: &'static str) -> Response<AgentBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests;

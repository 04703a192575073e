//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: authorised
//! here, then proxied to the node agent that runs the pod, as upstream's
//! `pkg/registry/core/pod/rest` (`LogREST`, `ExecREST`, `AttachREST`,
//! `PortForwardREST`) and `pkg/registry/core/pod/strategy.go` (`LogLocation`,
//! `streamLocation`, `PortForwardLocation`).
//!
//! The node is found from the pod's `spec.nodeName`: its Node object's address
//! (`InternalIP`, else `ExternalIP`, else `Hostname`, K3s's preference) and
//! `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset). The agent is
//! always reached over TLS (also the one inside this process, on loopback) with
//! the API server's kubelet client certificate, and its serving certificate must
//! be signed by the server CA for the address dialled.
//!
//! Logs stream through as they come (`follow`). Exec, attach and port-forward
//! need an upgrade (SPDY or WebSocket): the request goes to the agent with its
//! upgrade headers (credentials removed) and, on `101 Switching Protocols`, the
//! two connections are spliced; any other answer of the agent is passed back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kedge_api::status::Cause;
use kedge_api::ApiError;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::auth::{self, Attributes, User};
use crate::negotiate;
use crate::path::ResourcePath;
use crate::server::{ApiServer, Body};

/// The kubelet's default port.
const DEFAULT_KUBELET_PORT: u16 = 10250;
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Upstream reads at most this much of an error answer.
const MAX_ERROR_BODY: usize = 50_000;

/// The pod subresources served here.
const SUBRESOURCES: [&str; 4] = ["log", "exec", "attach", "portforward"];

impl ApiServer {
    /// The TLS client configuration for node agents
    /// ([`kedge_pki::kubelet_client_tls_config`]); without it, these
    /// subresources answer 503. Set once; later calls are ignored.
    pub fn set_kubelet_client_tls(&self, tls: Arc<rustls::ClientConfig>) {
        let _ = self.kubelet_client.set(tls);
    }
}

/// Whether `rp` is one of the subresources served here.
pub(crate) fn serves(rp: &ResourcePath) -> bool {
    rp.group.is_empty()
        && rp.resource == "pods"
        && rp.namespace.is_some()
        && rp.name.is_some()
        && rp
            .subresource
            .as_deref()
            .is_some_and(|s| SUBRESOURCES.contains(&s))
}

pub(crate) async fn handle(
    srv: Arc<ApiServer>,
    user: User,
    rp: ResourcePath,
    req: Request<Body>,
) -> Response<Body> {
    match handle_inner(&srv, &user, &rp, req).await {
        Ok(r) => r,
        Err(e) => negotiate::error_response(&e),
    }
}

async fn handle_inner(
    srv: &ApiServer,
    user: &User,
    rp: &ResourcePath,
    req: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    if rp.version != "v1" {
        return Err(ApiError::not_found_path());
    }
    let ns = rp.namespace.as_deref().unwrap_or_default();
    let name = rp.name.as_deref().unwrap_or_default();
    let sub = rp.subresource.as_deref().unwrap_or_default();
    let method = req.method().clone();
    let verb = match (&method, sub) {
        (&Method::GET, _) => "get",
        (&Method::POST, "exec" | "attach" | "portforward") => "create",
        _ => return Err(ApiError::method_not_allowed()),
    };
    let attrs = |verb| Attributes {
        verb,
        group: "",
        resource: "pods",
        subresource: Some(sub),
        namespace: Some(ns),
        name: Some(name),
    };
    auth::authorize(user, &attrs(verb))?;
    // 1.30+ (AuthorizePodWebsocketUpgradeCreatePermission): a WebSocket GET
    // that streams also needs `create`.
    if verb == "get" && sub != "log" {
        auth::authorize(user, &attrs("create"))?;
    }
    let query = Query::parse(req.uri().query());
    let pod = crate::handler::fetch(srv, pods(), Some(ns), name)?.1;
    match sub {
        "log" => logs(srv, ns, name, &pod, &query).await,
        "exec" | "attach" => {
            let target = stream_target(srv, ns, name, &pod, sub, &query)?;
            upgrade(srv, target, req).await
        }
        _ => {
            let target = port_forward_target(srv, ns, name, &pod, &query)?;
            upgrade(srv, target, req).await
        }
    }
}

fn pods() -> &'static kedge_api::registry::ResourceInfo {
    kedge_api::registry::lookup("", "v1", "pods").unwrap_or(&kedge_api::RESOURCES[0])
}

/// Decoded query parameters, as upstream's parameter codec reads them.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Go's `Convert_Slice_string_To_bool`: present and not `0`/`false`.
    fn flag(&self, key: &str) -> bool {
        self.first(key)
            .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.first(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            }),
        }
    }
}

/// Where on which node a request goes.
struct Target {
    node: NodeAddress,
    /// Path and query on the agent.
    path: String,
}

struct NodeAddress {
    host: String,
    port: u16,
}

impl NodeAddress {
    fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The node's address and agent port (upstream's `NodeConnectionInfoGetter`).
fn node_address(srv: &ApiServer, node_name: &str) -> Result<NodeAddress, ApiError> {
    let nodes = kedge_api::registry::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let node = crate::handler::fetch(srv, nodes, None, node_name)?.1;
    let addresses = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses.iter().find_map(|a| {
                (a["type"] == *kind)
                    .then(|| a["address"].as_str().unwrap_or_default().to_owned())
                    .filter(|s| !s.is_empty())
            })
        })
        .ok_or_else(|| {
            ApiError::internal(format!(
                "no preferred addresses found; known addresses: {}",
                Value::Array(addresses)
            ))
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(NodeAddress { host, port })
}

fn node_name(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

/// Containers of every kind, in upstream's `VisitContainers` order.
fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// Upstream's `validateContainer`: the named container must exist; none named
/// is fine only when the pod has exactly one (regular) container.
fn pick_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            if container_names(pod).iter().any(|n| n == c) {
                Ok(c.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None => {
            let regular = pod["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match regular.as_slice() {
                [one] => Ok(one["name"].as_str().unwrap_or_default().to_owned()),
                [] => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(pod).join(" ")
                ))),
            }
        }
    }
}

fn encode(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn path_segment(s: &str) -> String {
    // Names are DNS labels/subdomains; escape anything else anyway.
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn logs(
    srv: &ApiServer,
    ns: &str,
    name: &str,
    pod: &Value,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let tail_lines = q.int("tailLines")?;
    let limit_bytes = q.int("limitBytes")?;
    let since_seconds = q.int("sinceSeconds")?;
    let since_time = match q.first("sinceTime").filter(|s| !s.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<jiff::Timestamp>().map_err(|_| {
            ApiError::bad_request(format!(
                "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?} as RFC 3339"
            ))
        })?),
    };
    // ValidatePodLogOptions.
    let mut causes = Vec::new();
    if let Some(n) = tail_lines.filter(|n| *n < 0) {
        causes.push(Cause::invalid(
            "tailLines",
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = limit_bytes.filter(|n| *n < 1) {
        causes.push(Cause::invalid(
            "limitBytes",
            &json!(n),
            "must be greater than 0",
        ));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => causes.push(Cause::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(n), None) if n < 1 => causes.push(Cause::invalid(
            "sinceSeconds",
            &json!(n),
            "must be greater than 0",
        )),
        _ => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", name, causes));
    }
    let container = pick_container(pod, name, q.first("container"))?;
    let node_name = node_name(pod);
    if node_name.is_empty() {
        // Upstream: no location, so an empty stream.
        return Ok(log_response(Body::empty()));
    }
    let node = node_address(srv, node_name)?;
    let mut params: Vec<(&str, String)> = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if q.flag(flag) {
            params.push((flag, "true".into()));
        }
    }
    if let Some(n) = since_seconds {
        params.push(("sinceSeconds", n.to_string()));
    }
    if let Some(t) = since_time {
        params.push(("sinceTime", t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
    }
    if let Some(n) = tail_lines {
        params.push(("tailLines", n.to_string()));
    }
    if let Some(n) = limit_bytes {
        params.push(("limitBytes", n.to_string()));
    }
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        path_segment(ns),
        path_segment(name),
        path_segment(&container)
    );
    if !params.is_empty() {
        path.push('?');
        path.push_str(&encode(&params));
    }
    let target = Target { node, path };
    let url = format!("https://{}{}", target.node.authority(), target.path);
    let mut sender = connect(srv, &target.node)
        .await
        .map_err(|e| ApiError::new(500, "", format!("Get {url:?}: {e}")))?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(&target.path)
        .header(header::HOST, target.node.authority())
        .body(Empty::<Bytes>::new())
        .map_err(ApiError::internal)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ApiError::new(500, "", format!("Get {url:?}: {e}")))?;
    let status = response.status();
    if !(200..=206).contains(&status.as_u16()) {
        // Upstream's GenericHttpResponseChecker.
        let body = read_limited(response.into_body()).await;
        let text = agent_message(&body);
        return Err(match status.as_u16() {
            500 => ApiError::internal(text),
            400 => ApiError::bad_request(text),
            code => generic_server_response(code, name, &text),
        });
    }
    let body = response.into_body().map_err(axum::Error::new);
    Ok(log_response(Body::new(body)))
}

fn log_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Upstream's `NewGenericServerResponse` for `pods/log`.
fn generic_server_response(code: u16, name: &str, body: &str) -> ApiError {
    let (reason, message) = match code {
        404 => (
            "NotFound",
            "the server could not find the requested resource",
        ),
        401 => (
            "Unauthorized",
            "the server has asked for the client to provide credentials",
        ),
        403 => (
            "Forbidden",
            "the server does not allow access to the requested resource",
        ),
        409 => ("Conflict", "the server reported a conflict"),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request",
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        _ => (
            "",
            "the server responded with the status code but did not return more information",
        ),
    };
    let mut e = ApiError::new(code, reason, format!("{message} ( pods/log {name})"));
    e.details = Some(Box::new(json!({
        "name": name,
        "kind": "pods/log",
        "causes": [{"reason": "UnexpectedServerResponse", "message": body}],
    })));
    e
}

/// The message of an agent's error answer: its `Status` message, else the text.
fn agent_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            (v["kind"] == "Status")
                .then(|| v["message"].as_str().map(str::to_owned))
                .flatten()
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim_end().to_owned())
}

async fn read_limited(mut body: hyper::body::Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            out.extend_from_slice(data);
            if out.len() >= MAX_ERROR_BODY {
                out.truncate(MAX_ERROR_BODY);
                break;
            }
        }
    }
    out
}

/// Upstream's `streamLocation` for exec and attach.
fn stream_target(
    srv: &ApiServer,
    ns: &str,
    name: &str,
    pod: &Value,
    sub: &str,
    q: &Query,
) -> Result<Target, ApiError> {
    let command: Vec<&str> = q.all("command");
    if sub == "exec" && command.iter().all(|c| c.is_empty()) {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let container = pick_container(pod, name, q.first("container"))?;
    let node_name = node_name(pod);
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = node_address(srv, node_name)?;
    let mut params: Vec<(&str, String)> = Vec::new();
    for (ours, kubelet) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        if q.flag(ours) {
            params.push((kubelet, "1".into()));
        }
    }
    if sub == "exec" {
        params.extend(command.into_iter().map(|c| ("command", c.to_owned())));
    }
    let path = format!(
        "/{sub}/{}/{}/{}?{}",
        path_segment(ns),
        path_segment(name),
        path_segment(&container),
        encode(&params)
    );
    Ok(Target { node, path })
}

/// Upstream's `PortForwardLocation`; `ports` (repeated or comma-separated)
/// becomes the agent's `port`.
fn port_forward_target(
    srv: &ApiServer,
    ns: &str,
    name: &str,
    pod: &Value,
    q: &Query,
) -> Result<Target, ApiError> {
    let mut ports = Vec::new();
    for value in q.all("ports") {
        for p in value.split(',').filter(|p| !p.is_empty()) {
            let port: i64 = p.trim().parse().map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {p:?}: invalid syntax"))
            })?;
            if !(1..=65535).contains(&port) {
                return Err(ApiError::invalid(
                    "",
                    "PodPortForwardOptions",
                    name,
                    vec![Cause::invalid(
                        "ports",
                        &json!(port),
                        "must be between 1 and 65535, inclusive",
                    )],
                ));
            }
            ports.push(port.to_string());
        }
    }
    let node_name = node_name(pod);
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = node_address(srv, node_name)?;
    let mut path = format!("/portForward/{}/{}", path_segment(ns), path_segment(name));
    if !ports.is_empty() {
        path.push('?');
        path.push_str(&encode(&[("port", ports.join(","))]));
    }
    Ok(Target { node, path })
}

fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Request headers that do not go to the agent: credentials (the agent trusts
/// the API server, not the user), hop-by-hop ones and body framing.
fn forwarded_headers(from: &HeaderMap) -> HeaderMap {
    const DROPPED: [&str; 9] = [
        "authorization",
        "host",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
    ];
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        let n: &HeaderName = name;
        if DROPPED.contains(&n.as_str()) || n.as_str().starts_with("impersonate-") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Proxies an upgrade request to the agent and splices the connections.
async fn upgrade(
    srv: &ApiServer,
    target: Target,
    mut req: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    if !is_upgrade_request(req.headers()) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let mut sender = connect(srv, &target.node)
        .await
        .map_err(|e| ApiError::new(500, "", format!("error dialing backend: {e}")))?;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut backend_req = Request::builder()
        .method(req.method().clone())
        .uri(&target.path)
        .body(Empty::<Bytes>::new())
        .map_err(ApiError::internal)?;
    *backend_req.headers_mut() = forwarded_headers(req.headers());
    if let Ok(host) = target.node.authority().parse() {
        backend_req.headers_mut().insert(header::HOST, host);
    }
    let mut response = sender
        .send_request(backend_req)
        .await
        .map_err(|e| ApiError::new(500, "", format!("error proxying to the node agent: {e}")))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        return Ok(Response::from_parts(
            parts,
            Body::new(body.map_err(axum::Error::new)),
        ));
    }
    let backend_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client_upgrade, backend_upgrade) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "node proxy: upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => tracing::debug!(up, down, "node proxy: stream closed"),
            Err(e) => tracing::debug!(error = %e, "node proxy: stream ended with an error"),
        }
    });
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = response.headers().clone();
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("the API server has no kubelet client certificate configured")]
    NoClientTls,
    #[error("dial tcp {addr}: {}", go_dial_error(source))]
    Tcp {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dial tcp {addr}: i/o timeout")]
    Timeout { addr: String },
    #[error("invalid node address {0:?}")]
    Name(String),
    #[error("tls: {0}")]
    Tls(#[source] std::io::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

/// A dial error worded as Go's net package words the common ones.
fn go_dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".into(),
        std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        _ => format!("connect: {e}"),
    }
}

/// An HTTP/1.1 connection over TLS to the node agent.
async fn connect(
    srv: &ApiServer,
    node: &NodeAddress,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, DialError> {
    let tls = srv
        .kubelet_client
        .get()
        .cloned()
        .ok_or(DialError::NoClientTls)?;
    let addr = node.authority();
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(DialError::Tcp { addr, source }),
        Err(_) => return Err(DialError::Timeout { addr }),
    };
    let _ = tcp.set_nodelay(true);
    let name = match node.host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(node.host.clone())
            .map_err(|_| DialError::Name(node.host.clone()))?,
    };
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(DialError::Tls)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(DialError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "node agent connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({"spec": {"containers": list(containers), "initContainers": list(init)}})
    }

    #[test]
    fn container_choice_as_upstream() {
        assert_eq!(pick_container(&pod(&["a"], &[]), "p", None).unwrap(), "a");
        let e = pick_container(&pod(&["a", "b"], &["i"]), "p", None).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [i a b]"
        );
        assert_eq!(
            pick_container(&pod(&["a", "b"], &["i"]), "p", Some("i")).unwrap(),
            "i"
        );
        let e = pick_container(&pod(&["a"], &[]), "p", Some("z")).unwrap_err();
        assert_eq!(e.message, "container z is not valid for pod p");
        let e = pick_container(&pod(&[], &[]), "p", None).unwrap_err();
        assert_eq!(e.message, "a container name must be specified for pod p");
    }

    #[test]
    fn queries_decode_like_go() {
        let q = Query::parse(Some(
            "follow&previous=false&timestamps=0&tailLines=x&command=a&command=b+c",
        ));
        assert!(q.flag("follow"));
        assert!(!q.flag("previous") && !q.flag("timestamps") && !q.flag("absent"));
        assert_eq!(
            q.int("tailLines").unwrap_err().message,
            "strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert_eq!(q.all("command"), ["a", "b c"]);
    }

    #[test]
    fn credentials_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer x".parse().unwrap());
        h.insert("impersonate-user", "bob".parse().unwrap());
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "SPDY/3.1".parse().unwrap());
        h.insert(
            "x-stream-protocol-version",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        assert!(is_upgrade_request(&h));
        let out = forwarded_headers(&h);
        assert!(!out.contains_key("authorization") && !out.contains_key("impersonate-user"));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn agent_errors_keep_their_message() {
        assert_eq!(
            agent_message(br#"{"kind":"Status","message":"container \"a\" in pod \"p\" is waiting to start: ContainerCreating"}"#),
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert_eq!(agent_message(b"plain text\n"), "plain text");
        let e = generic_server_response(404, "web", "pod does not exist");
        assert_eq!(
            e.message,
            "the server could not find the requested resource ( pods/log web)"
        );
        assert_eq!(
            NodeAddress {
                host: "fd00::1".into(),
                port: 10250
            }
            .authority(),
            "[fd00::1]:10250"
        );
    }
}

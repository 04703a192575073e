//! The HTTP GET of `httpGet` probes and lifecycle hooks, as upstream's
//! `pkg/probe/http` does it with Go's `net/http` client:
//!
//! - the URL is `scheme://host:port` + the action's path (which may carry a
//!   query); the host defaults to the pod IP, the port is a number or a
//!   container port's name;
//! - headers: the action's `httpHeaders` (a `Host` entry sets the Host
//!   header), then `User-Agent: kube-probe/1.33` (`kube-lifecycle/1.33` for
//!   hooks) and `Accept: */*` unless the action set them (an empty `Accept`
//!   removes it); no `Accept-Encoding`, `Connection: close`;
//! - HTTPS without certificate verification (the handshake signature is
//!   still checked), HTTP/1.1;
//! - redirects are followed (at most 10) while they stay on the same host
//!   name; a redirect to another host ends the exchange with the 3xx answer,
//!   which the caller reports as a warning;
//! - at most 10 KiB of the body is read;
//! - one timeout covers connecting, redirects and reading the body.
//!
//! Error texts follow Go's (`Get "URL": dial tcp ADDR: connect: connection
//! refused`), since they end up in events users compare with upstream's.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{resolve_container_port, KUBE_MINOR_VERSION};

/// Upstream's `maxRespBodyLength`.
pub const MAX_BODY: usize = 10 * 1024;
const MAX_REDIRECTS: usize = 10;

/// A GET request, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGetRequest {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query as the action gave them (`/healthz`, `ready?full=1`, ``).
    pub path: String,
    /// Header name and value, in order, names as given.
    pub headers: Vec<(String, String)>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGetResponse {
    pub status: u16,
    /// At most [`MAX_BODY`] bytes.
    pub body: Bytes,
}

impl HttpGetRequest {
    /// Builds the request of an `httpGet` action (upstream's
    /// `NewRequestForHTTPGetAction`): `purpose` is `probe` or `lifecycle`.
    pub fn from_action(
        action: &Value,
        container: &Value,
        pod_ip: &str,
        purpose: &str,
    ) -> Result<HttpGetRequest, String> {
        let scheme = action
            .get("scheme")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let scheme = if scheme.is_empty() {
            "http".to_owned()
        } else {
            scheme
        };
        let host = match action.get("host").and_then(Value::as_str) {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => pod_ip.to_owned(),
        };
        let port = resolve_container_port(action.get("port"), container)?;
        let path = action
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut headers: Vec<(String, String)> = action
            .get("httpHeaders")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|h| {
                        (
                            canonical_header_key(
                                h.get("name").and_then(Value::as_str).unwrap_or(""),
                            ),
                            h.get("value")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !headers.iter().any(|(n, _)| n == "User-Agent") {
            headers.push((
                "User-Agent".to_owned(),
                format!("kube-{purpose}/{KUBE_MINOR_VERSION}"),
            ));
        }
        match headers.iter().find(|(n, _)| n == "Accept") {
            None => headers.push(("Accept".to_owned(), "*/*".to_owned())),
            // `headers.Get("Accept") == ""`: the first value is empty.
            Some((_, v)) if v.is_empty() => headers.retain(|(n, _)| n != "Accept"),
            Some(_) => {}
        }
        Ok(HttpGetRequest {
            scheme,
            host,
            port,
            path,
            headers,
        })
    }

    /// The URL as Go prints it (`http://10.0.0.5:8080/healthz`).
    pub fn url(&self) -> String {
        let target = Target::new(&self.scheme, &self.host, self.port, &self.path);
        target.url()
    }

    /// Sends the request within `timeout`, following same-host redirects.
    /// `Err` carries Go's error text (`Get "URL": …`).
    pub async fn send(&self, timeout: Duration) -> Result<HttpGetResponse, String> {
        let first = Target::new(&self.scheme, &self.host, self.port, &self.path);
        match tokio::time::timeout(timeout, self.exchange(first.clone())).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                first.url()
            )),
        }
    }

    async fn exchange(&self, first: Target) -> Result<HttpGetResponse, String> {
        let host_header = self
            .headers
            .iter()
            .find(|(n, _)| n == "Host")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty());
        let mut target = first.clone();
        let mut custom_host = host_header;
        let mut redirects = 0;
        loop {
            let url = target.url();
            let response = self
                .once(&target, custom_host.as_deref())
                .await
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            let is_redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            let Some(location) = response.location.clone().filter(|_| is_redirect) else {
                return Ok(HttpGetResponse {
                    status: response.status,
                    body: response.body,
                });
            };
            let Some((next, relative)) = target.join(&location) else {
                return Err(format!(
                    "Get {url:?}: failed to parse Location header {location:?}"
                ));
            };
            // upstream's redirectChecker: another host name ends it (the
            // 3xx answer is the result); otherwise at most 10 redirects.
            if !next.host.eq_ignore_ascii_case(&first.host) {
                return Ok(HttpGetResponse {
                    status: response.status,
                    body: response.body,
                });
            }
            // Go counts the requests already made and names the Location.
            redirects += 1;
            if redirects >= MAX_REDIRECTS {
                return Err(format!("Get {location:?}: stopped after 10 redirects"));
            }
            // Go keeps a custom Host header only through relative redirects.
            if !relative {
                custom_host = None;
            }
            target = next;
        }
    }

    async fn once(
        &self,
        target: &Target,
        host_header: Option<&str>,
    ) -> Result<RawResponse, String> {
        let addr = join_host_port(&target.host, target.port);
        let tcp = connect(&target.host, target.port).await?;
        if target.scheme == "https" {
            let server_name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("tls: invalid server name {:?}: {e}", target.host))?;
            let connector = tokio_rustls::TlsConnector::from(insecure_tls_config());
            let tls = connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| tls_error_text(&e))?;
            self.over(tls, target, host_header, &addr).await
        } else if target.scheme == "http" {
            self.over(tcp, target, host_header, &addr).await
        } else {
            Err(format!("unsupported protocol scheme {:?}", target.scheme))
        }
    }

    async fn over<S>(
        &self,
        stream: S,
        target: &Target,
        host_header: Option<&str>,
        addr: &str,
    ) -> Result<RawResponse, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut builder = http::Request::get(target.request_uri());
        let host = host_header.map_or_else(|| addr.to_owned(), str::to_owned);
        builder = builder.header(http::header::HOST, host);
        for (name, value) in &self.headers {
            if name == "Host" {
                continue;
            }
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            builder = builder.header(header_name, header_value);
        }
        builder = builder.header(http::header::CONNECTION, "close");
        let request = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("net/http: {e}"))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| hyper_error_text(&e))?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut body = response.into_body();
            let mut collected = Vec::new();
            while collected.len() < MAX_BODY {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = MAX_BODY - collected.len();
                            collected.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    Some(Err(e)) => return Err(hyper_error_text(&e)),
                    None => break,
                }
            }
            Ok(RawResponse {
                status,
                location,
                body: Bytes::from(collected),
            })
        }
        .await;
        driver.abort();
        result
    }
}

struct RawResponse {
    status: u16,
    location: Option<String>,
    body: Bytes,
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
    /// Path (maybe empty) and `?query`, no fragment.
    path: String,
}

impl Target {
    fn new(scheme: &str, host: &str, port: u16, path: &str) -> Target {
        let path = path.split('#').next().unwrap_or("");
        Target {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        }
    }

    fn url(&self) -> String {
        let sep =
            if self.path.is_empty() || self.path.starts_with('/') || self.path.starts_with('?') {
                ""
            } else {
                "/"
            };
        format!(
            "{}://{}{sep}{}",
            self.scheme,
            join_host_port(&self.host, self.port),
            self.path
        )
    }

    /// The request line's target: the path with a leading `/`, and the query.
    fn request_uri(&self) -> String {
        if self.path.is_empty() || self.path.starts_with('?') {
            format!("/{}", self.path)
        } else if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        }
    }

    /// Resolves a Location header against this target; also says whether it
    /// was relative (no scheme and host of its own).
    fn join(&self, location: &str) -> Option<(Target, bool)> {
        let location = location.split('#').next().unwrap_or("");
        if let Some((scheme, rest)) = location.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return None;
            }
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let default_port = if scheme == "https" { 443 } else { 80 };
            let (host, port) = split_authority(authority, default_port)?;
            return Some((Target::new(&scheme, &host, port, path), false));
        }
        if let Some(rest) = location.strip_prefix("//") {
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let default_port = if self.scheme == "https" { 443 } else { 80 };
            let (host, port) = split_authority(authority, default_port)?;
            return Some((Target::new(&self.scheme, &host, port, path), false));
        }
        let path = if location.starts_with('/') {
            location.to_owned()
        } else if let Some(query) = location.strip_prefix('?') {
            let base = self.request_uri();
            let base = base.split('?').next().unwrap_or("/");
            format!("{base}?{query}")
        } else {
            let base = self.request_uri();
            let base = base.split('?').next().unwrap_or("/");
            let dir = base.rsplit_once('/').map_or("", |(d, _)| d);
            format!("{dir}/{location}")
        };
        Some((
            Target::new(&self.scheme, &self.host, self.port, &path),
            true,
        ))
    }
}

fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey` (`x-custom-header` →
/// `X-Custom-Header`); names with characters outside a token stay as given.
pub fn canonical_header_key(name: &str) -> String {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return name.to_owned();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// A TCP connection as Go's dialer reports failures
/// (`dial tcp 10.0.0.5:80: connect: connection refused`).
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addr = join_host_port(host, port);
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => return Err(format!("dial tcp: lookup {host}: {}", go_errno_text(&e))),
    };
    let mut last = None;
    for sock in addrs {
        match TcpStream::connect(sock).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => format!("dial tcp {addr}: connect: {}", go_errno_text(&e)),
        None => format!("dial tcp: lookup {host}: no such host"),
    })
}

/// An OS error as Go spells it: `connection refused`, not
/// `Connection refused (os error 111)`.
pub fn go_errno_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn hyper_error_text(err: &hyper::Error) -> String {
    if err.is_incomplete_message() || err.is_closed() {
        "EOF".to_owned()
    } else if err.is_parse() {
        format!("net/http: HTTP/1.x transport connection broken: {err}")
    } else {
        err.to_string()
    }
}

fn tls_error_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    // A plain HTTP server answers the ClientHello with "HTTP/1.x 400 ...",
    // which rustls sees as a record of an invalid content type; Go's client
    // recognises it and says so (lifecycle hooks retry over HTTP then).
    if text.contains("InvalidContentType") {
        "http: server gave HTTP response to HTTPS client".to_owned()
    } else {
        format!("tls: {text}")
    }
}

/// The message Go's client gives a plain-HTTP answer to an HTTPS request.
pub const HTTP_RESPONSE_TO_HTTPS: &str = "server gave HTTP response to HTTPS client";

/// TLS without certificate verification (upstream's `InsecureSkipVerify`),
/// ring provider, TLS 1.2 and 1.3, no ALPN (HTTP/1.1).
fn insecure_tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(verifier.clone())
                        .with_no_client_auth()
                });
            // The ring provider supports the default versions; if that ever
            // changes, fall back to TLS 1.3 only rather than fail the probe.
            Arc::new(config.unwrap_or_else(|_| {
                ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            }))
        })
        .clone()
}

/// Accepts any server certificate; still checks that the server holds the
/// certificate's key (the handshake signature).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_and_request_targets_follow_go() {
        let t = Target::new("http", "10.0.0.5", 8080, "");
        assert_eq!(
            (t.url().as_str(), t.request_uri().as_str()),
            ("http://10.0.0.5:8080", "/")
        );
        let t = Target::new("http", "10.0.0.5", 80, "healthz?full=1#frag");
        assert_eq!(t.url(), "http://10.0.0.5:80/healthz?full=1");
        assert_eq!(t.request_uri(), "/healthz?full=1");
        let t = Target::new("https", "fd00::5", 443, "/x");
        assert_eq!(t.url(), "https://[fd00::5]:443/x");
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = Target::new("http", "10.0.0.5", 8080, "/a/b?q=1");
        let (t, rel) = base.join("c").expect("relative");
        assert_eq!((t.path.as_str(), rel), ("/a/c", true));
        let (t, _) = base.join("/root").expect("absolute path");
        assert_eq!(t.url(), "http://10.0.0.5:8080/root");
        let (t, _) = base.join("?x=2").expect("query");
        assert_eq!(t.path, "/a/b?x=2");
        let (t, rel) = base.join("https://example.com/z").expect("absolute");
        assert_eq!(
            (t.host.as_str(), t.port, t.scheme.as_str(), rel),
            ("example.com", 443, "https", false)
        );
        let (t, _) = base.join("//[::1]:9/p").expect("scheme-relative");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert!(base.join("ftp://x/").is_none());
    }

    #[test]
    fn headers_get_defaults_and_canonical_names() {
        let container = json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]});
        let action = json!({"port": "http", "path": "/h", "httpHeaders": [
            {"name": "x-custom", "value": "1"}, {"name": "x-custom", "value": "2"}
        ]});
        let req =
            HttpGetRequest::from_action(&action, &container, "10.1.2.3", "probe").expect("request");
        assert_eq!(req.url(), "http://10.1.2.3:8080/h");
        assert_eq!(
            req.headers,
            vec![
                ("X-Custom".to_owned(), "1".to_owned()),
                ("X-Custom".to_owned(), "2".to_owned()),
                (
                    "User-Agent".to_owned(),
                    format!("kube-probe/{KUBE_MINOR_VERSION}")
                ),
                ("Accept".to_owned(), "*/*".to_owned()),
            ]
        );
        let action = json!({"port": 80, "scheme": "HTTPS", "host": "example.com", "httpHeaders": [
            {"name": "accept", "value": ""}, {"name": "user-agent", "value": "mine"}
        ]});
        let req = HttpGetRequest::from_action(&action, &container, "10.1.2.3", "lifecycle")
            .expect("request");
        assert_eq!(req.url(), "https://example.com:80");
        assert_eq!(
            req.headers,
            vec![("User-Agent".to_owned(), "mine".to_owned())]
        );
        assert_eq!(canonical_header_key("content-TYPE"), "Content-Type");
        assert_eq!(canonical_header_key("bad key"), "bad key");
    }
}

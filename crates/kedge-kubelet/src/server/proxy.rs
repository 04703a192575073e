//! The upgrade-aware proxy to the runtime's streaming server (upstream's
//! `proxy.UpgradeAwareHandler` with `UpgradeRequired`): the client's request
//! goes to the streaming URL with its upgrade headers; a `101 Switching
//! Protocols` answer is passed back and the two upgraded connections are
//! spliced both ways until either side closes; any other answer is passed
//! back as it is.

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{AgentBody, BoxError};

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid streaming URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("error dialing backend: {0}")]
    Dial(#[source] std::io::Error),
    #[error("error proxying to the backend: {0}")]
    Http(#[source] hyper::Error),
    #[error("invalid request for the backend: {0}")]
    Request(#[source] http::Error),
}

/// Headers that belong to one hop (RFC 9110 §7.6.1) and are not forwarded,
/// except `Connection: Upgrade` and `Upgrade`, which the upgrade needs.
const HOP_BY_HOP: [&str; 7] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// `Connection: upgrade` (as one of its tokens) and an `Upgrade` header.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// An upgrade to WebSocket.
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    is_upgrade_request(headers)
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Proxies `req` (an upgrade request) to `url` (`http://host:port/path?query`).
pub async fn proxy_upgrade(
    mut req: Request<Incoming>,
    url: &str,
) -> Result<Response<AgentBody>, ProxyError> {
    let bad_url = |reason: &str| ProxyError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad_url("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad_url("only http streaming servers are supported"));
    }
    let authority = uri.authority().ok_or_else(|| bad_url("no host"))?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(ProxyError::Dial)?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(ProxyError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "streaming backend connection ended with an error");
        }
    });

    let client_upgrade = hyper::upgrade::on(&mut req);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut backend_req = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(ProxyError::Request)?;
    *backend_req.headers_mut() = forwarded_headers(req.headers());
    if let Ok(host) = authority.as_str().parse() {
        backend_req.headers_mut().insert(header::HOST, host);
    }

    let mut backend_resp = sender
        .send_request(backend_req)
        .await
        .map_err(ProxyError::Http)?;
    if backend_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = backend_resp.into_parts();
        return Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed(),
        ));
    }
    let backend_upgrade = hyper::upgrade::on(&mut backend_resp);
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client_upgrade, backend_upgrade) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => tracing::debug!(up, down, "stream closed"),
            Err(e) => tracing::debug!(error = %e, "stream ended with an error"),
        }
    });
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = backend_resp.headers().clone();
    Ok(response)
}

/// The client's headers minus hop-by-hop ones, `Host` and body framing.
pub(crate) fn forwarded_headers(from: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if is_dropped(name) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers
}

fn is_dropped(name: &HeaderName) -> bool {
    name == header::HOST || name == header::CONTENT_LENGTH || HOP_BY_HOP.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn recognises_upgrades() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade_request(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(!is_upgrade_request(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(is_upgrade_request(&h));
        assert!(!is_websocket_request(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_websocket_request(&h));
    }

    #[test]
    fn forwards_upgrade_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v3.channel.k8s.io"),
        );
        h.insert(header::HOST, HeaderValue::from_static("node:10250"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let out = forwarded_headers(&h);
        assert_eq!(out.get_all("x-stream-protocol-version").iter().count(), 2);
        assert!(out.contains_key(header::UPGRADE) && out.contains_key(header::CONNECTION));
        assert!(!out.contains_key(header::HOST));
        assert!(!out.contains_key(header::TRANSFER_ENCODING));
        assert!(!out.contains_key(header::CONTENT_LENGTH));
    }
}

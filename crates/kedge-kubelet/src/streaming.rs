//! Streaming protocol translation for exec, attach and port-forward.
//!
//! kubectl 1.30+ speaks WebSocket to the API server: `v5.channel.k8s.io` for
//! exec/attach/cp (channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize,
//! and 255 to half-close one of them), and since 1.31 SPDY tunnelled inside
//! WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`) for
//! port-forward. A client that gets anything but 101 to its WebSocket
//! upgrade falls back to plain SPDY (client-go's `FallbackExecutor` and
//! `FallbackDialer`, on `httpstream.IsUpgradeFailure`).
//!
//! containerd 1.6's CRI streaming server knows neither: it speaks SPDY/3.1
//! with `v4.channel.k8s.io` and older, and the WebSocket protocols
//! `channel.k8s.io` to `v4.channel.k8s.io` without the close signal (what the
//! Python client uses; those, and plain SPDY, the agent proxies unchanged).
//! Upstream, kube-apiserver bridges the gap (`StreamTranslatorHandler`,
//! `TunnelingHandler`); kedge does it in the agent, next to the runtime:
//!
//! - exec/attach: the client's v5 WebSocket is answered here, and the agent
//!   opens a SPDY/3.1 connection to the CRI URL with `v4.channel.k8s.io`,
//!   one stream per channel (`streamtype` error, stdin, stdout, stderr,
//!   resize); the v4 error-stream Status becomes the v5 one, exit codes
//!   included, and the v5 close of stdin becomes a SPDY FIN;
//! - port-forward: the agent upgrades to the CRI URL with SPDY/3.1 +
//!   `portforward.k8s.io` first, answers the WebSocket with
//!   `SPDY/3.1+<negotiated>`, then copies bytes both ways: the client's
//!   SPDY session reaches containerd untouched.
//!
//! [`wants_translation`] says whether a request is one of these;
//! [`translate`] answers it. The HTTP server must serve connections with
//! upgrades enabled (`serve_connection_with_upgrades` or `.with_upgrades()`).
//!
//! Flow control: the SPDY implementation every CRI streaming server uses
//! (moby/spdystream, through the kubelet's streaming library) neither sends
//! nor honours WINDOW_UPDATE, and neither does client-go; so this client
//! ignores the peer's windows and sends none itself. Sending them is not
//! harmless: containerd closes the connection right after writing the exit
//! Status, and a frame written into the closed socket draws a TCP reset that
//! discards the stdout and Status still unread in the receive queue (seen
//! under load). Whatever the client writes at the end (more stdin than the
//! process read) carries the same risk, as it does for kubectl over SPDY.

mod inflate;
pub mod spdy;
mod translate;
pub mod websocket;

pub use translate::{translate, wants_translation};

/// The remote-command protocol with the close signal (WebSocket only).
pub const STREAM_PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The remote-command protocol containerd's server speaks over SPDY.
pub const STREAM_PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// The port-forward protocol over SPDY.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// What client-go puts before a SPDY protocol tunnelled over WebSocket.
pub const SPDY_TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// Which kubelet streaming endpoint a request is for (the agent server's).
pub use crate::server::StreamKind;

/// The agent server's [`crate::server::StreamTranslator`], backed by
/// [`wants_translation`] and [`translate`]:
/// `AgentServer::new(..).with_translator(Arc::new(Translator))`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Translator;

impl crate::server::StreamTranslator for Translator {
    fn wants_translation(&self, headers: &http::HeaderMap) -> bool {
        wants_translation(headers)
    }

    fn translate(
        &self,
        req: http::Request<hyper::body::Incoming>,
        kind: StreamKind,
        backend_url: String,
    ) -> crate::server::ResponseFuture {
        use http_body_util::BodyExt;
        Box::pin(async move {
            let response = match backend_url.parse::<http::Uri>() {
                Ok(backend) => translate(req, kind, backend).await,
                Err(_) => translate::status_response(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("Internal error occurred: invalid streaming URL {backend_url:?}"),
                ),
            };
            response.map(|body| body.map_err(|never| match never {}).boxed())
        })
    }
}

/// Failures on the way to, or during, a translated stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("unsupported streaming URL {0:?} (want http://host:port/...)")]
    BackendUrl(String),
    #[error("error dialing backend {addr}: {source}")]
    Dial {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out dialing backend {0}")]
    DialTimeout(String),
    #[error("backend connection: {0}")]
    Http(#[from] hyper::Error),
    #[error("unable to upgrade connection: {status} {body}")]
    NotUpgraded {
        status: http::StatusCode,
        body: String,
    },
    #[error("SPDY: {0}")]
    Spdy(#[from] spdy::SpdyError),
    #[error("backend I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing to the client: {0}")]
    Client(std::io::Error),
    #[error("{0}")]
    WebSocket(#[from] websocket::WsError),
    #[error("stream {stream} was reset by the backend (status {status})")]
    Reset { stream: &'static str, status: u32 },
}

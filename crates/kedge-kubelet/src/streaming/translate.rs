//! The bridges: v5 WebSocket to SPDY v4 for exec/attach, WebSocket-tunnelled
//! SPDY to plain SPDY for port-forward.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::spdy::{self, Frame, FrameCodec};
use super::websocket::{self, close, Message, Role, WsReader, WsWriter};
use super::{
    StreamKind, StreamingError, PORT_FORWARD_PROTOCOL, SPDY_TUNNEL_PREFIX, STREAM_PROTOCOL_V4,
    STREAM_PROTOCOL_V5,
};

type Result<T> = std::result::Result<T, StreamingError>;

/// Largest WebSocket message accepted: a SPDY data frame (24-bit length)
/// tunnelled in one message, plus its header.
const MAX_WS_MESSAGE: usize = spdy::MAX_FRAME_PAYLOAD + 16;
/// Largest error-stream Status kept from the backend.
const MAX_STATUS: usize = 64 * 1024;
/// Largest non-101 body read from the backend for an error message.
const MAX_ERROR_BODY: usize = 16 * 1024;
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Channel numbers of the remote-command WebSocket protocols.
const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
/// v5: `[255, channel]` closes `channel`.
const CH_CLOSE: u8 = 255;

const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Whether a request should go through [`translate`] rather than be proxied
/// unchanged: a WebSocket upgrade offering `v5.channel.k8s.io` (exec,
/// attach) or `SPDY/3.1+portforward.k8s.io` (port-forward). Older
/// `channel.k8s.io` WebSocket protocols and plain SPDY upgrades are served
/// by containerd itself.
pub fn wants_translation(headers: &HeaderMap) -> bool {
    websocket::is_upgrade_request(headers)
        && websocket::offered_protocols(headers)
            .iter()
            .any(|p| p == STREAM_PROTOCOL_V5 || is_tunnelled_port_forward(p))
}

fn is_tunnelled_port_forward(protocol: &str) -> bool {
    protocol.strip_prefix(SPDY_TUNNEL_PREFIX) == Some(PORT_FORWARD_PROTOCOL)
}

/// Answer a WebSocket exec/attach/port-forward request by bridging it to the
/// CRI streaming URL `backend`: 101 with the negotiated subprotocol, the
/// bridge then running in a spawned task; a Kubernetes Status error
/// otherwise.
pub async fn translate(
    mut req: Request<Incoming>,
    kind: StreamKind,
    backend: Uri,
) -> Response<Full<Bytes>> {
    let accept = match websocket::check_handshake(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err(websocket::HandshakeError::Version) => {
            let mut response = status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "unsupported websocket version (want 13)".to_owned(),
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return response;
        }
        Err(err) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", err.to_string()),
    };
    let offered = websocket::offered_protocols(req.headers());
    match kind {
        StreamKind::Exec | StreamKind::Attach => {
            if !offered.iter().any(|p| p == STREAM_PROTOCOL_V5) {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "requested protocol(s) are not supported: {offered:?}; supports [{STREAM_PROTOCOL_V5:?}]"
                    ),
                );
            }
            let options = match StreamOptions::from_query(req.uri().query().unwrap_or_default()) {
                Ok(options) => options,
                Err(message) => {
                    return status_response(StatusCode::BAD_REQUEST, "BadRequest", message)
                }
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => run_remote_command(upgraded, options, kind, backend).await,
                    Err(err) => warn!(error = %err, ?kind, "websocket upgrade did not complete"),
                }
            });
            switching_protocols(&accept, STREAM_PROTOCOL_V5)
        }
        StreamKind::PortForward => {
            let protocols: Vec<String> = offered
                .iter()
                .filter_map(|p| p.strip_prefix(SPDY_TUNNEL_PREFIX))
                .map(str::to_owned)
                .collect();
            if protocols.is_empty() {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "unable to upgrade: no tunneling spdy protocols provided".to_owned(),
                );
            }
            // Upgrade the backend first: if it refuses, the client sees that
            // answer instead of a 101 and falls back to plain SPDY.
            let (backend_io, negotiated) =
                match dial_spdy(&backend, req.method().clone(), &protocols).await {
                    Ok(upgraded) => upgraded,
                    Err(StreamingError::NotUpgraded { status, body }) => {
                        return Response::builder()
                            .status(status)
                            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default();
                    }
                    Err(err) => {
                        warn!(error = %err, "port-forward: backend upgrade failed");
                        return status_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "InternalError",
                            format!("Internal error occurred: {err}"),
                        );
                    }
                };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => run_tunnel(upgraded, backend_io).await,
                    Err(err) => {
                        warn!(error = %err, "port-forward: websocket upgrade did not complete")
                    }
                }
            });
            switching_protocols(&accept, &format!("{SPDY_TUNNEL_PREFIX}{negotiated}"))
        }
    }
}

fn switching_protocols(accept: &str, protocol: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    if let Ok(value) = HeaderValue::from_str(protocol) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    response
}

/// A `v1 Status` failure as the API server writes it.
pub(super) fn status_response(
    code: StatusCode,
    reason: &str,
    message: String,
) -> Response<Full<Bytes>> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// Which standard streams the client asked for: the kubelet's query
/// parameters (`input`, `output`, `error`, `tty`, "1" from the API server),
/// or the pod subresource's (`stdin`, `stdout`, `stderr`, "true").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamOptions {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl StreamOptions {
    fn from_query(query: &str) -> std::result::Result<StreamOptions, String> {
        let flag = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .filter(|(key, _)| key == name)
                .last()
                .is_some_and(|(_, value)| {
                    matches!(&*value, "1" | "t" | "T" | "true" | "True" | "TRUE")
                })
        };
        let tty = flag("tty");
        let options = StreamOptions {
            stdin: flag("input") || flag("stdin"),
            stdout: flag("output") || flag("stdout"),
            // The kubelet drops stderr with a TTY: the terminal merges it.
            stderr: (flag("error") || flag("stderr")) && !tty,
            tty,
        };
        if !options.stdin && !options.stdout && !options.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".to_owned());
        }
        Ok(options)
    }
}

/// Connect to a CRI streaming URL and upgrade to SPDY/3.1 offering
/// `protocols`; returns the connection and the protocol the server chose.
async fn dial_spdy(
    backend: &Uri,
    method: http::Method,
    protocols: &[String],
) -> Result<(TokioIo<Upgraded>, String)> {
    let bad_url = || StreamingError::BackendUrl(backend.to_string());
    if backend.scheme_str() != Some("http") {
        return Err(bad_url());
    }
    let authority = backend.authority().ok_or_else(bad_url)?;
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| StreamingError::DialTimeout(addr.clone()))?
        .map_err(|source| StreamingError::Dial {
            addr: addr.clone(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            debug!(error = %err, "streaming backend connection ended");
        }
    });
    let path = backend.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for protocol in protocols {
        request = request.header(STREAM_PROTOCOL_HEADER, protocol.as_str());
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|_| bad_url())?;
    let mut response = sender.send_request(request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        return Err(StreamingError::NotUpgraded { status, body });
    }
    let negotiated = response
        .headers()
        .get(STREAM_PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let upgraded = hyper::upgrade::on(&mut response).await?;
    debug!(%addr, protocol = %negotiated, "upgraded to SPDY/3.1 with the streaming backend");
    Ok((TokioIo::new(upgraded), negotiated))
}

/// Exec/attach: the client's v5 WebSocket on one side, a SPDY v4 session
/// with the backend on the other.
async fn run_remote_command(
    upgraded: Upgraded,
    options: StreamOptions,
    kind: StreamKind,
    backend: Uri,
) {
    let (read, write) = tokio::io::split(TokioIo::new(upgraded));
    let mut client_in = WsReader::new(read, Role::Server, MAX_WS_MESSAGE, &[]);
    let mut client_out = WsWriter::new(write, Role::Server);
    // Tell the client the connection is established: an empty message on
    // the lowest channel it writes to (as the kubelet and apiserver do).
    let first = if options.stdout {
        CH_STDOUT
    } else if options.stderr {
        CH_STDERR
    } else {
        CH_ERROR
    };
    if let Err(err) = client_out
        .send(&Message::Binary(Bytes::from(vec![first])))
        .await
    {
        debug!(error = %err, "websocket client left before the stream started");
        return;
    }
    let outcome = match dial_spdy(
        &backend,
        http::Method::POST,
        &[STREAM_PROTOCOL_V4.to_owned()],
    )
    .await
    {
        Ok((backend_io, _)) => {
            let mut session = RemoteCommand::new(options);
            session
                .run(backend_io, &mut client_in, &mut client_out)
                .await
        }
        Err(err) => Err(err),
    };
    let status = match outcome {
        Ok(Some(status)) => status,
        // The client went away: nobody to tell.
        Ok(None) => return,
        Err(err) => {
            warn!(error = %err, ?kind, "remote command stream failed");
            internal_error(&err.to_string())
        }
    };
    let mut message = BytesMut::new();
    message.put_u8(CH_ERROR);
    message.put_slice(status.to_string().as_bytes());
    let _ = client_out.send(&Message::Binary(message.freeze())).await;
    let _ = client_out
        .send(&Message::Close(Some((close::NORMAL, String::new()))))
        .await;
    let _ = client_out.shutdown().await;
}

/// One SPDY stream of the session.
#[derive(Debug, Default)]
struct Stream {
    id: u32,
    /// The backend finished (FIN or RST) its half.
    remote_done: bool,
    /// We sent FIN.
    local_done: bool,
}

/// The SPDY side of an exec/attach.
struct RemoteCommand {
    codec: FrameCodec,
    out: BytesMut,
    error: Stream,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
    status: Vec<u8>,
}

impl RemoteCommand {
    fn new(options: StreamOptions) -> Self {
        // Client streams are odd, created in client-go's order.
        let mut next = 1;
        let mut stream = |wanted: bool| {
            wanted.then(|| {
                let stream = Stream {
                    id: next,
                    ..Stream::default()
                };
                next += 2;
                stream
            })
        };
        let error = stream(true).unwrap_or_default();
        let stdin = stream(options.stdin);
        let stdout = stream(options.stdout);
        let stderr = stream(options.stderr);
        let resize = stream(options.tty);
        RemoteCommand {
            codec: FrameCodec::default(),
            out: BytesMut::new(),
            error,
            stdin,
            stdout,
            stderr,
            resize,
            status: Vec::new(),
        }
    }

    fn streams(&self) -> impl Iterator<Item = (&'static str, &Stream)> {
        [
            ("error", Some(&self.error)),
            ("stdin", self.stdin.as_ref()),
            ("stdout", self.stdout.as_ref()),
            ("stderr", self.stderr.as_ref()),
            ("resize", self.resize.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, stream)| stream.map(|s| (name, s)))
    }

    fn queue(&mut self, frame: &Frame) -> Result<()> {
        Ok(self.codec.encode(frame, &mut self.out)?)
    }

    /// The remote command ended: the backend closed the error stream and
    /// every output stream (client-go waits for stdout, stderr and the
    /// error stream).
    fn finished(&self) -> bool {
        self.error.remote_done
            && self.stdout.as_ref().is_none_or(|s| s.remote_done)
            && self.stderr.as_ref().is_none_or(|s| s.remote_done)
    }

    /// Run until the command ends (`Some(status)` for the client) or the
    /// client leaves (`None`).
    async fn run<B, R, W>(
        &mut self,
        backend: B,
        client_in: &mut WsReader<R>,
        client_out: &mut WsWriter<W>,
    ) -> Result<Option<Value>>
    where
        B: AsyncRead + AsyncWrite + Unpin,
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (mut backend_in, mut backend_out) = tokio::io::split(backend);
        let headers = |kind: &str| vec![("streamtype".to_owned(), kind.to_owned())];
        let opened: Vec<(u32, &str)> = self
            .streams()
            .map(|(name, stream)| (stream.id, name))
            .collect();
        for (id, name) in opened {
            self.queue(&Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: headers(name),
            })?;
        }
        let mut read_buf = BytesMut::with_capacity(16 * 1024);
        let mut backend_open = true;
        loop {
            if !self.out.is_empty() {
                tracing::trace!(
                    bytes = self.out.len(),
                    "SPDY frames to the streaming backend"
                );
                let written = async {
                    backend_out.write_all(&self.out).await?;
                    backend_out.flush().await
                };
                if let Err(err) = written.await {
                    // The backend closes right after it wrote the Status;
                    // only a failure before that is one.
                    if self.status.is_empty() {
                        return Err(err.into());
                    }
                    debug!(error = %err, "streaming backend gone after the Status");
                    break;
                }
                self.out.clear();
            }
            if self.finished() || !backend_open {
                break;
            }
            tokio::select! {
                message = client_in.next() => {
                    match message {
                        Ok(Some(Message::Binary(data) | Message::Text(data))) => {
                            self.on_client_message(&data)?;
                        }
                        Ok(Some(Message::Ping(payload))) => {
                            client_out
                                .send(&Message::Pong(payload))
                                .await
                                .map_err(StreamingError::Client)?;
                        }
                        Ok(Some(Message::Pong(_))) => {}
                        Ok(Some(Message::Close(close))) => {
                            debug!(?close, "websocket client closed the stream");
                            let code = close.map_or(close::NORMAL, |(code, _)| code);
                            let _ = client_out.send(&Message::Close(Some((code, String::new())))).await;
                            self.hang_up(&mut backend_out).await;
                            return Ok(None);
                        }
                        Ok(None) => {
                            self.hang_up(&mut backend_out).await;
                            return Ok(None);
                        }
                        Err(err) => {
                            let _ = client_out
                                .send(&Message::Close(Some((err.close_code(), err.to_string()))))
                                .await;
                            self.hang_up(&mut backend_out).await;
                            return Err(err.into());
                        }
                    }
                }
                read = backend_in.read_buf(&mut read_buf) => {
                    match read {
                        Ok(0) => {
                            debug!("streaming backend closed the connection");
                            backend_open = false;
                        }
                        Ok(_) => {}
                        Err(err) if !self.status.is_empty() => {
                            debug!(error = %err, "streaming backend gone after the Status");
                            backend_open = false;
                        }
                        Err(err) => return Err(err.into()),
                    }
                    while let Some(frame) = self.codec.decode(&mut read_buf)? {
                        tracing::trace!(?frame, "SPDY frame from the streaming backend");
                        self.on_backend_frame(frame, client_out).await?;
                    }
                    read_buf.reserve(16 * 1024);
                }
            }
        }
        if !self.finished() {
            debug!("streaming backend ended before closing every stream");
        }
        self.hang_up(&mut backend_out).await;
        Ok(Some(status_for_client(&self.status)))
    }

    /// A v5 message from the client.
    fn on_client_message(&mut self, data: &[u8]) -> Result<()> {
        let Some((&channel, payload)) = data.split_first() else {
            return Ok(());
        };
        let target = match channel {
            CH_STDIN => self.stdin.as_mut(),
            CH_RESIZE => self.resize.as_mut(),
            CH_CLOSE => {
                // [255, channel]: half-close stdin (or resize).
                let [closed] = payload else {
                    debug!(len = payload.len(), "malformed v5 close signal ignored");
                    return Ok(());
                };
                let stream = match *closed {
                    CH_STDIN => self.stdin.as_mut(),
                    CH_RESIZE => self.resize.as_mut(),
                    _ => None,
                };
                let Some(stream) = stream.filter(|s| !s.local_done) else {
                    return Ok(());
                };
                stream.local_done = true;
                let id = stream.id;
                return self.queue(&Frame::Data {
                    stream_id: id,
                    fin: true,
                    data: Bytes::new(),
                });
            }
            other => {
                debug!(
                    channel = other,
                    "data for a channel the client may not write ignored"
                );
                None
            }
        };
        let Some(stream) = target.filter(|s| !s.local_done) else {
            return Ok(());
        };
        let id = stream.id;
        for chunk in payload.chunks(spdy::MAX_FRAME_PAYLOAD) {
            self.queue(&Frame::Data {
                stream_id: id,
                fin: false,
                data: Bytes::copy_from_slice(chunk),
            })?;
        }
        Ok(())
    }

    /// A frame from the backend.
    async fn on_backend_frame<W: AsyncWrite + Unpin>(
        &mut self,
        frame: Frame,
        client_out: &mut WsWriter<W>,
    ) -> Result<()> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let channel = if Some(stream_id) == self.stdout.as_ref().map(|s| s.id) {
                    Some(CH_STDOUT)
                } else if Some(stream_id) == self.stderr.as_ref().map(|s| s.id) {
                    Some(CH_STDERR)
                } else {
                    None
                };
                if stream_id == self.error.id {
                    let room = MAX_STATUS.saturating_sub(self.status.len());
                    self.status.extend_from_slice(&data[..data.len().min(room)]);
                } else if let (Some(channel), false) = (channel, data.is_empty()) {
                    let mut message = BytesMut::with_capacity(data.len() + 1);
                    message.put_u8(channel);
                    message.put_slice(&data);
                    client_out
                        .send(&Message::Binary(message.freeze()))
                        .await
                        .map_err(StreamingError::Client)?;
                }
                if let Some(stream) = self.stream_mut(stream_id) {
                    stream.remote_done |= fin;
                }
            }
            Frame::SynReply { stream_id, fin, .. } | Frame::Headers { stream_id, fin, .. } => {
                if let Some(stream) = self.stream_mut(stream_id) {
                    stream.remote_done |= fin;
                }
            }
            Frame::RstStream { stream_id, status } => {
                let name = self
                    .streams()
                    .find(|(_, s)| s.id == stream_id)
                    .map(|(name, _)| name);
                if let Some(stream) = self.stream_mut(stream_id) {
                    stream.remote_done = true;
                    stream.local_done = true;
                }
                // A reset before the command finished is a failure; after the
                // error stream carried the Status it is only cleanup.
                if let Some(name) = name.filter(|_| !self.error.remote_done) {
                    if status != spdy::rst::CANCEL {
                        return Err(StreamingError::Reset {
                            stream: name,
                            status,
                        });
                    }
                }
            }
            Frame::Ping { id } => {
                // Our pings would be odd; echo the server's.
                if id % 2 == 0 {
                    self.queue(&Frame::Ping { id })?;
                }
            }
            Frame::SynStream { stream_id, .. } => {
                self.queue(&Frame::RstStream {
                    stream_id,
                    status: spdy::rst::REFUSED_STREAM,
                })?;
            }
            Frame::GoAway { .. } | Frame::Settings { .. } | Frame::WindowUpdate { .. } => {}
        }
        Ok(())
    }

    fn stream_mut(&mut self, id: u32) -> Option<&mut Stream> {
        [
            Some(&mut self.error),
            self.stdin.as_mut(),
            self.stdout.as_mut(),
            self.stderr.as_mut(),
            self.resize.as_mut(),
        ]
        .into_iter()
        .flatten()
        .find(|s| s.id == id)
    }

    /// End the session politely (FIN on our open streams, GOAWAY), then
    /// close our half; errors do not matter any more.
    async fn hang_up<W: AsyncWrite + Unpin>(&mut self, backend_out: &mut W) {
        let open: Vec<u32> = [
            Some(&self.error),
            self.stdin.as_ref(),
            self.stdout.as_ref(),
            self.stderr.as_ref(),
            self.resize.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter(|s| !s.local_done)
        .map(|s| s.id)
        .collect();
        for stream_id in open {
            let _ = self.queue(&Frame::Data {
                stream_id,
                fin: true,
                data: Bytes::new(),
            });
        }
        let _ = self.queue(&Frame::GoAway {
            last_good_stream_id: 0,
            status: spdy::goaway::OK,
        });
        let _ = backend_out.write_all(&self.out).await;
        self.out.clear();
        let _ = backend_out.shutdown().await;
    }
}

/// The v5 error-channel Status from what the backend's v4 error stream
/// carried, as kube-apiserver's stream translator writes it: client-go's v4
/// decoding (exit codes become `NonZeroExitCode`, other failures internal
/// errors), then re-encoded.
fn status_for_client(raw: &[u8]) -> Value {
    if raw.is_empty() {
        return success();
    }
    let status: Value = match serde_json::from_slice(raw) {
        Ok(value) => value,
        Err(err) => {
            return internal_error(&format!(
                "error stream protocol error: {err} in {:?}",
                String::from_utf8_lossy(raw)
            ))
        }
    };
    match status["status"].as_str() {
        Some("Success") => success(),
        Some("Failure") if status["reason"] == "NonZeroExitCode" => {
            let Some(causes) = status["details"]["causes"].as_array() else {
                return internal_error("error stream protocol error: details must be set");
            };
            let Some(cause) = causes.iter().find(|c| c["reason"] == "ExitCode") else {
                return internal_error("error stream protocol error: no ExitCode cause given");
            };
            let message = cause["message"].as_str().unwrap_or_default();
            match message.parse::<u8>() {
                Ok(code) => exit_code(code),
                Err(_) => internal_error(&format!(
                    "error stream protocol error: invalid exit code value {message:?}"
                )),
            }
        }
        Some("Failure") => internal_error(status["message"].as_str().unwrap_or_default()),
        _ => internal_error("error stream protocol error: unknown error"),
    }
}

fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

fn exit_code(code: u8) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: command terminated with exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// Port-forward: WebSocket binary messages to raw bytes and back; the
/// client's SPDY session runs end to end with the backend.
async fn run_tunnel(client: Upgraded, backend: TokioIo<Upgraded>) {
    let (client_read, client_write) = tokio::io::split(TokioIo::new(client));
    let mut client_in = WsReader::new(client_read, Role::Server, MAX_WS_MESSAGE, &[]);
    let client_out = Arc::new(tokio::sync::Mutex::new(WsWriter::new(
        client_write,
        Role::Server,
    )));
    let (mut backend_in, mut backend_out) = tokio::io::split(backend);

    let downstream = {
        let client_out = Arc::clone(&client_out);
        async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match backend_in.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) => {
                        debug!(error = %err, "port-forward: backend read failed");
                        break;
                    }
                };
                let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                if client_out.lock().await.send(&message).await.is_err() {
                    return;
                }
            }
            let mut out = client_out.lock().await;
            let _ = out
                .send(&Message::Close(Some((close::NORMAL, String::new()))))
                .await;
            let _ = out.shutdown().await;
        }
    };
    let upstream = {
        let client_out = Arc::clone(&client_out);
        async move {
            loop {
                match client_in.next().await {
                    Ok(Some(Message::Binary(data))) => {
                        if backend_out.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Ok(Some(Message::Ping(payload))) => {
                        let _ = client_out.lock().await.send(&Message::Pong(payload)).await;
                    }
                    Ok(Some(Message::Pong(_))) => {}
                    Ok(Some(Message::Text(_))) => {
                        // client-go: "invalid message type received".
                        let _ = client_out
                            .lock()
                            .await
                            .send(&Message::Close(Some((
                                close::INVALID_DATA,
                                "text message in a SPDY tunnel".to_owned(),
                            ))))
                            .await;
                        break;
                    }
                    Ok(Some(Message::Close(close))) => {
                        let code = close.map_or(close::NORMAL, |(code, _)| code);
                        let _ = client_out
                            .lock()
                            .await
                            .send(&Message::Close(Some((code, String::new()))))
                            .await;
                        break;
                    }
                    Ok(None) => break,
                    Err(err) => {
                        let _ = client_out
                            .lock()
                            .await
                            .send(&Message::Close(Some((err.close_code(), err.to_string()))))
                            .await;
                        break;
                    }
                }
            }
            let _ = backend_out.shutdown().await;
        }
    };
    // Either direction ending ends the tunnel, as upstream's proxy does.
    tokio::select! {
        () = downstream => {}
        () = upstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn translation_is_for_v5_and_tunnelled_port_forward_only() {
        let upgrade = [("upgrade", "websocket"), ("connection", "Upgrade")];
        let with = |protocol: &'static str| {
            let mut map = headers(&upgrade);
            map.append("sec-websocket-protocol", HeaderValue::from_static(protocol));
            map
        };
        assert!(wants_translation(&with("v5.channel.k8s.io")));
        assert!(wants_translation(&with(
            "v4.channel.k8s.io, v5.channel.k8s.io"
        )));
        assert!(wants_translation(&with("SPDY/3.1+portforward.k8s.io")));
        // Old WebSocket protocols: containerd serves them itself.
        assert!(!wants_translation(&with("v4.channel.k8s.io")));
        assert!(!wants_translation(&with(
            "channel.k8s.io, base64.channel.k8s.io"
        )));
        assert!(!wants_translation(&with("portforward.k8s.io")));
        // Plain SPDY upgrades are proxied.
        let mut spdy = headers(&[("upgrade", "SPDY/3.1"), ("connection", "Upgrade")]);
        spdy.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert!(!wants_translation(&spdy));
    }

    #[test]
    fn stream_options_follow_the_kubelet() {
        let options =
            StreamOptions::from_query("command=sh&stdin=true&stdout=1&stderr=true&tty=true")
                .unwrap();
        assert_eq!(
            options,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        let options = StreamOptions::from_query("stdout=true&stderr=1").unwrap();
        assert!(!options.stdin && options.stdout && options.stderr && !options.tty);
        // The kubelet's own names, as the API server sends them.
        let options = StreamOptions::from_query("command=cat&input=1&output=1&error=1").unwrap();
        assert!(options.stdin && options.stdout && options.stderr && !options.tty);
        let options = StreamOptions::from_query("output=1&error=0&input=0").unwrap();
        assert!(!options.stdin && options.stdout && !options.stderr);
        assert_eq!(
            StreamOptions::from_query("command=ls&stdin=false&tty=true"),
            Err("you must specify at least 1 of stdin, stdout, stderr".to_owned())
        );
    }

    #[test]
    fn session_streams_are_created_in_client_go_order() {
        let session = RemoteCommand::new(StreamOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        });
        let order: Vec<(&str, u32)> = session.streams().map(|(n, s)| (n, s.id)).collect();
        assert_eq!(
            order,
            [("error", 1), ("stdin", 3), ("stdout", 5), ("resize", 7)]
        );
    }

    async fn next_frame(
        io: &mut tokio::io::DuplexStream,
        codec: &mut FrameCodec,
        buf: &mut BytesMut,
    ) -> Frame {
        loop {
            if let Some(frame) = codec.decode(buf).unwrap() {
                return frame;
            }
            assert_ne!(io.read_buf(buf).await.unwrap(), 0, "bridge hung up early");
        }
    }

    /// The session against a scripted SPDY server (what containerd does, in
    /// memory): streams in client-go's order, stdin and its close signal,
    /// outputs to the right channels, window updates, the exit Status.
    #[tokio::test]
    async fn remote_command_session_against_a_scripted_spdy_server() {
        let (backend, mut server) = tokio::io::duplex(1 << 20);
        let (bridge_side, client_side) = tokio::io::duplex(1 << 20);
        let (read, write) = tokio::io::split(bridge_side);
        let (client_read, client_write) = tokio::io::split(client_side);
        let mut client_in = WsReader::new(client_read, Role::Client, 1 << 20, &[]);
        let mut client_out = WsWriter::new(client_write, Role::Client);
        let options = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let bridge = tokio::spawn(async move {
            let mut ws_in = WsReader::new(read, Role::Server, MAX_WS_MESSAGE, &[]);
            let mut ws_out = WsWriter::new(write, Role::Server);
            RemoteCommand::new(options)
                .run(backend, &mut ws_in, &mut ws_out)
                .await
        });

        let (mut codec, mut buf) = (FrameCodec::default(), BytesMut::new());
        let mut opened = Vec::new();
        for _ in 0..4 {
            match next_frame(&mut server, &mut codec, &mut buf).await {
                Frame::SynStream {
                    stream_id, headers, ..
                } => {
                    assert_eq!(headers.len(), 1);
                    assert_eq!(headers[0].0, "streamtype");
                    opened.push((stream_id, headers[0].1.clone()));
                }
                other => panic!("expected SYN_STREAM, got {other:?}"),
            }
        }
        assert_eq!(
            opened,
            [
                (1, "error".to_owned()),
                (3, "stdin".to_owned()),
                (5, "stdout".to_owned()),
                (7, "stderr".to_owned())
            ]
        );
        let mut wire = BytesMut::new();
        for (stream_id, _) in &opened {
            codec
                .encode(
                    &Frame::SynReply {
                        stream_id: *stream_id,
                        fin: false,
                        headers: vec![],
                    },
                    &mut wire,
                )
                .unwrap();
        }
        server.write_all(&wire).await.unwrap();

        client_out
            .send(&Message::Binary(Bytes::from_static(b"\x00hi")))
            .await
            .unwrap();
        client_out
            .send(&Message::Binary(Bytes::from_static(&[CH_CLOSE, CH_STDIN])))
            .await
            .unwrap();
        assert_eq!(
            next_frame(&mut server, &mut codec, &mut buf).await,
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(
            next_frame(&mut server, &mut codec, &mut buf).await,
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new()
            }
        );

        let exited = br#"{"metadata":{},"status":"Failure","message":"exit code 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#;
        let mut wire = BytesMut::new();
        for frame in [
            Frame::Data {
                stream_id: 5,
                fin: false,
                data: Bytes::from(vec![b'x'; 40_000]),
            },
            Frame::Data {
                stream_id: 7,
                fin: true,
                data: Bytes::from_static(b"e"),
            },
            Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::new(),
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(exited),
            },
        ] {
            codec.encode(&frame, &mut wire).unwrap();
        }
        server.write_all(&wire).await.unwrap();

        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while stdout.len() < 40_000 || stderr.is_empty() {
            match client_in.next().await.unwrap() {
                Some(Message::Binary(data)) => match data.split_first() {
                    Some((&CH_STDOUT, rest)) => stdout.extend_from_slice(rest),
                    Some((&CH_STDERR, rest)) => stderr.extend_from_slice(rest),
                    other => panic!("unexpected message {other:?}"),
                },
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((stdout, stderr), (vec![b'x'; 40_000], b"e".to_vec()));
        let status = bridge.await.unwrap().unwrap().unwrap();
        assert_eq!(status, exit_code(2));

        // What the bridge sent after the stdin FIN: FIN on its open streams,
        // GOAWAY, and no WINDOW_UPDATE for the 40 kB (see the module doc).
        let mut rest = Vec::new();
        loop {
            let frame = next_frame(&mut server, &mut codec, &mut buf).await;
            let last = matches!(frame, Frame::GoAway { .. });
            rest.push(frame);
            if last {
                break;
            }
        }
        assert!(
            !rest
                .iter()
                .any(|f| matches!(f, Frame::WindowUpdate { .. } | Frame::Ping { .. })),
            "the bridge wrote frames the backend did not ask for: {rest:?}"
        );
        for stream_id in [1, 5, 7] {
            assert!(
                rest.contains(&Frame::Data {
                    stream_id,
                    fin: true,
                    data: Bytes::new()
                }),
                "no FIN on stream {stream_id} in {rest:?}"
            );
        }
    }

    #[test]
    fn error_stream_statuses_become_v5_statuses() {
        assert_eq!(
            status_for_client(b""),
            json!({"metadata": {}, "status": "Success"})
        );
        assert_eq!(
            status_for_client(br#"{"metadata":{},"status":"Success"}"#),
            success()
        );
        // What containerd's v4 server writes for `exit 3`.
        let exited = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        let status = status_for_client(exited);
        assert_eq!(
            status.to_string(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: command terminated with exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let failed = br#"{"metadata":{},"status":"Failure","message":"container not found","reason":"InternalError","code":500}"#;
        let status = status_for_client(failed);
        assert_eq!(status["reason"], "InternalError");
        assert_eq!(
            status["message"],
            "Internal error occurred: container not found"
        );
        assert_eq!(status["code"], 500);
        let status = status_for_client(b"plain text error");
        assert!(status["message"]
            .as_str()
            .unwrap()
            .contains("error stream protocol error"));
        let no_cause =
            br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[]}}"#;
        assert_eq!(
            status_for_client(no_cause)["details"]["causes"][0]["message"],
            "error stream protocol error: no ExitCode cause given"
        );
    }
}

//! RFC 6455 WebSocket: the opening handshake's server side and the framing
//! of both roles (the client role serves tests and tools).
//!
//! Hand-rolled instead of `tokio-tungstenite`: the agent needs binary and
//! control frames, fragmentation and the close handshake, no extensions and
//! no client handshake; this is about 400 lines with SHA-1 from `ring`
//! (already linked for TLS) where tungstenite would add its own SHA-1, UTF-8,
//! HTTP parsing and random crates.

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// RFC 6455 section 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close codes (RFC 6455 section 7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Which end of the connection this codec is: servers read masked frames
/// and write unmasked ones, clients the opposite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// One whole message, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// Status code and reason, if the peer gave one.
    Close(Option<(u16, String)>),
}

/// A protocol violation by the peer; `close_code` is what to answer with.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("websocket text message is not UTF-8")]
    InvalidUtf8,
    #[error("websocket message larger than {0} bytes")]
    TooBig(usize),
    #[error("websocket connection: {0}")]
    Io(#[from] std::io::Error),
}

impl WsError {
    /// The close code that tells the peer what went wrong.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close::PROTOCOL_ERROR,
            WsError::InvalidUtf8 => close::INVALID_DATA,
            WsError::TooBig(_) => close::TOO_BIG,
            WsError::Io(_) => close::INTERNAL_ERROR,
        }
    }
}

/// Why an upgrade request is not a WebSocket handshake this server accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    #[error("websocket handshake must use GET")]
    Method,
    #[error("unsupported Sec-WebSocket-Version (want 13)")]
    Version,
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// Whether `value` (a comma-separated header) lists `token`, ignoring case.
fn has_token(headers: &http::HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .unwrap_or_default()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// `Upgrade: websocket` with `Connection: upgrade`.
pub fn is_upgrade_request(headers: &http::HeaderMap) -> bool {
    has_token(headers, http::header::UPGRADE, "websocket")
        && has_token(headers, http::header::CONNECTION, "upgrade")
}

/// The subprotocols a client offers, in its order of preference.
pub fn offered_protocols(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Check a client's opening handshake (RFC 6455 section 4.2.1); returns the
/// `Sec-WebSocket-Accept` value to answer with.
pub fn check_handshake(
    method: &http::Method,
    headers: &http::HeaderMap,
) -> Result<String, HandshakeError> {
    if !is_upgrade_request(headers) {
        return Err(HandshakeError::NotUpgrade);
    }
    if method != http::Method::GET {
        return Err(HandshakeError::Method);
    }
    let version = headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if version != Some("13") {
        return Err(HandshakeError::Version);
    }
    let key = headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(HandshakeError::Key)?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(accept_key(key)),
        _ => Err(HandshakeError::Key),
    }
}

/// `base64(SHA-1(key + GUID))` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// Frame decoder and encoder for one role.
pub struct WsCodec {
    role: Role,
    max_message: usize,
    /// Opcode and payload of a fragmented message being assembled.
    partial: Option<(u8, BytesMut)>,
}

impl WsCodec {
    pub fn new(role: Role, max_message: usize) -> Self {
        WsCodec {
            role,
            max_message,
            partial: None,
        }
    }

    /// Take the next whole message or control frame off `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some((fin, opcode, payload)) = self.decode_frame(buf)? else {
                return Ok(None);
            };
            match opcode {
                OP_CLOSE => {
                    let close = match payload.len() {
                        0 => None,
                        1 => return Err(WsError::Protocol("close payload of one byte")),
                        _ => {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            let reason = std::str::from_utf8(&payload[2..])
                                .map_err(|_| WsError::InvalidUtf8)?;
                            Some((code, reason.to_owned()))
                        }
                    };
                    return Ok(Some(Message::Close(close)));
                }
                OP_PING => return Ok(Some(Message::Ping(payload))),
                OP_PONG => return Ok(Some(Message::Pong(payload))),
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err(WsError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return finish(opcode, payload).map(Some);
                    }
                    self.partial = Some((opcode, BytesMut::from(&payload[..])));
                }
                OP_CONTINUATION => {
                    let Some((first, mut assembled)) = self.partial.take() else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    if assembled.len() + payload.len() > self.max_message {
                        return Err(WsError::TooBig(self.max_message));
                    }
                    assembled.put_slice(&payload);
                    if fin {
                        return finish(first, assembled.freeze()).map(Some);
                    }
                    self.partial = Some((first, assembled));
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    /// One frame: (FIN, opcode, unmasked payload).
    fn decode_frame(&self, buf: &mut BytesMut) -> Result<Option<(bool, u8, Bytes)>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let masked = b1 & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return Err(WsError::Protocol(if masked {
                "server frames must not be masked"
            } else {
                "client frames must be masked"
            }));
        }
        let (len, mut at) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(raw), 10)
            }
            n => (u64::from(n), 2),
        };
        if opcode >= OP_CLOSE && (!fin || len > 125) {
            return Err(WsError::Protocol("fragmented or oversized control frame"));
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= self.max_message)
            .ok_or(WsError::TooBig(self.max_message))?;
        let mask = if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            at += 4;
            Some(key)
        } else {
            None
        };
        if buf.len() < at + len {
            buf.reserve(at + len - buf.len());
            return Ok(None);
        }
        buf.advance(at);
        let mut payload = buf.split_to(len);
        if let Some(key) = mask {
            apply_mask(&mut payload, key);
        }
        Ok(Some((fin, opcode, payload.freeze())))
    }

    /// Append `message` as one frame to `out`.
    pub fn encode(&self, message: &Message, out: &mut BytesMut) {
        let mut close_payload = Vec::new();
        let (opcode, payload): (u8, &[u8]) = match message {
            Message::Text(data) => (OP_TEXT, data),
            Message::Binary(data) => (OP_BINARY, data),
            Message::Ping(data) => (OP_PING, &data[..data.len().min(125)]),
            Message::Pong(data) => (OP_PONG, &data[..data.len().min(125)]),
            Message::Close(close) => {
                if let Some((code, reason)) = close {
                    close_payload.extend_from_slice(&code.to_be_bytes());
                    let mut end = reason.len().min(123);
                    while !reason.is_char_boundary(end) {
                        end -= 1;
                    }
                    close_payload.extend_from_slice(&reason.as_bytes()[..end]);
                }
                (OP_CLOSE, &close_payload)
            }
        };
        out.reserve(payload.len() + 14);
        out.put_u8(0x80 | opcode);
        let mask_bit = if self.role == Role::Client { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.put_u8(mask_bit | n as u8),
            n if n <= usize::from(u16::MAX) => {
                out.put_u8(mask_bit | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(mask_bit | 127);
                out.put_u64(n as u64);
            }
        }
        if self.role == Role::Client {
            let key: [u8; 4] = rand::random();
            out.put_slice(&key);
            let start = out.len();
            out.put_slice(payload);
            apply_mask(&mut out[start..], key);
        } else {
            out.put_slice(payload);
        }
    }
}

fn finish(opcode: u8, payload: Bytes) -> Result<Message, WsError> {
    if opcode == OP_TEXT {
        std::str::from_utf8(&payload).map_err(|_| WsError::InvalidUtf8)?;
        Ok(Message::Text(payload))
    } else {
        Ok(Message::Binary(payload))
    }
}

fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// The reading half of a connection.
pub struct WsReader<R> {
    io: R,
    codec: WsCodec,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// `leftover`: bytes already read past the handshake.
    pub fn new(io: R, role: Role, max_message: usize, leftover: &[u8]) -> Self {
        WsReader {
            io,
            codec: WsCodec::new(role, max_message),
            buf: BytesMut::from(leftover),
        }
    }

    /// The next message; `None` when the peer closed the connection between
    /// frames.
    pub async fn next(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            if let Some(message) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(message));
            }
            self.buf.reserve(8 * 1024);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(WsError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// The writing half of a connection.
pub struct WsWriter<W> {
    io: W,
    codec: WsCodec,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    pub fn new(io: W, role: Role) -> Self {
        WsWriter {
            io,
            codec: WsCodec::new(role, 0),
            buf: BytesMut::new(),
        }
    }

    /// Write one message as one frame and flush it.
    pub async fn send(&mut self, message: &Message) -> std::io::Result<()> {
        self.buf.clear();
        self.codec.encode(message, &mut self.buf);
        self.io.write_all(&self.buf).await?;
        self.io.flush().await
    }

    /// Shut the underlying stream down (after a close frame).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn handshake_headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn handshake_checks_and_protocol_lists() {
        let good = handshake_headers(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
            ("sec-websocket-protocol", "channel.k8s.io"),
        ]);
        assert_eq!(
            check_handshake(&http::Method::GET, &good).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            offered_protocols(&good),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
        assert_eq!(
            check_handshake(&http::Method::POST, &good),
            Err(HandshakeError::Method)
        );
        let mut old = good.clone();
        old.insert("sec-websocket-version", "8".parse().unwrap());
        assert_eq!(
            check_handshake(&http::Method::GET, &old),
            Err(HandshakeError::Version)
        );
        let mut bad_key = good.clone();
        bad_key.insert("sec-websocket-key", "c2hvcnQ=".parse().unwrap());
        assert_eq!(
            check_handshake(&http::Method::GET, &bad_key),
            Err(HandshakeError::Key)
        );
        let spdy = handshake_headers(&[("upgrade", "SPDY/3.1"), ("connection", "Upgrade")]);
        assert!(!is_upgrade_request(&spdy));
        assert_eq!(
            check_handshake(&http::Method::GET, &spdy),
            Err(HandshakeError::NotUpgrade)
        );
    }

    #[test]
    fn rfc_6455_example_frames() {
        // Section 5.7: a masked "Hello" from a client, and unmasked from a server.
        let mut server = WsCodec::new(Role::Server, 1024);
        let mut buf = BytesMut::from(
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ][..],
        );
        assert_eq!(
            server.decode(&mut buf).unwrap(),
            Some(Message::Text(Bytes::from_static(b"Hello")))
        );
        let mut out = BytesMut::new();
        server.encode(&Message::Text(Bytes::from_static(b"Hello")), &mut out);
        assert_eq!(&out[..], [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // A fragmented unmasked text message, as a client reads it.
        let mut client = WsCodec::new(Role::Client, 1024);
        let mut buf = BytesMut::from(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f][..]);
        assert_eq!(
            client.decode(&mut buf).unwrap(),
            Some(Message::Text(Bytes::from_static(b"Hello")))
        );
        // Unmasked ping with "Hello", and 256 bytes of binary (16-bit length).
        let mut out = BytesMut::new();
        server.encode(&Message::Ping(Bytes::from_static(b"Hello")), &mut out);
        assert_eq!(&out[..], [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let mut out = BytesMut::new();
        server.encode(&Message::Binary(Bytes::from(vec![0u8; 256])), &mut out);
        assert_eq!(&out[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        let mut out = BytesMut::new();
        server.encode(&Message::Binary(Bytes::from(vec![0u8; 65_536])), &mut out);
        assert_eq!(&out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn client_frames_round_trip_through_a_server_codec() {
        let client = WsCodec::new(Role::Client, 0);
        let mut server = WsCodec::new(Role::Server, 1 << 20);
        let messages = [
            Message::Binary(Bytes::from_static(&[0, b'h', b'i'])),
            Message::Binary(Bytes::from(vec![9u8; 70_000])),
            Message::Ping(Bytes::from_static(b"k8s")),
            Message::Pong(Bytes::new()),
            Message::Close(Some((close::NORMAL, "bye".to_owned()))),
            Message::Close(None),
        ];
        let mut wire = BytesMut::new();
        for message in &messages {
            client.encode(message, &mut wire);
        }
        assert_eq!(wire[1] & 0x80, 0x80, "client frames are masked");
        let mut decoded = Vec::new();
        while let Some(message) = server.decode(&mut wire).unwrap() {
            decoded.push(message);
        }
        assert_eq!(decoded, messages);
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut server = WsCodec::new(Role::Server, 16);
        // Unmasked frame from a client.
        let mut buf = BytesMut::from(&[0x82, 0x01, 0x00][..]);
        assert!(matches!(server.decode(&mut buf), Err(WsError::Protocol(_))));
        // RSV1 without an extension.
        let mut buf = BytesMut::from(&[0xc2, 0x80, 0, 0, 0, 0][..]);
        assert!(matches!(server.decode(&mut buf), Err(WsError::Protocol(_))));
        // Fragmented ping.
        let mut buf = BytesMut::from(&[0x09, 0x80, 0, 0, 0, 0][..]);
        assert!(matches!(server.decode(&mut buf), Err(WsError::Protocol(_))));
        // Continuation with nothing to continue.
        let mut buf = BytesMut::from(&[0x80, 0x80, 0, 0, 0, 0][..]);
        assert!(matches!(server.decode(&mut buf), Err(WsError::Protocol(_))));
        // Larger than the limit.
        let mut buf = BytesMut::from(&[0x82, 0x91, 0, 0, 0, 0][..]);
        assert!(matches!(server.decode(&mut buf), Err(WsError::TooBig(16))));
        // Text that is not UTF-8.
        let mut buf = BytesMut::from(&[0x81, 0x81, 0, 0, 0, 0, 0xff][..]);
        let err = server.decode(&mut buf).unwrap_err();
        assert_eq!(err.close_code(), close::INVALID_DATA);
        // A partial frame waits for more bytes.
        let mut buf = BytesMut::from(&[0x82, 0x83, 1, 2][..]);
        assert_eq!(server.decode(&mut buf).unwrap(), None);
    }
}

//! SPDY/3.1 framing, as far as a client of the kubelet's streaming server
//! needs it (draft-mbelshe-httpbis-spdy-00 with the 3.1 flow-control frames).
//!
//! [`Frame`] covers every frame type: SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE and DATA. [`FrameCodec`]
//! turns frames into bytes and back, owning the two zlib streams of a
//! connection's header blocks: ours is written with stored (uncompressed)
//! deflate blocks, which any inflater accepts and which need no compressor
//! in the binary; the peer's is decoded by the small inflater in
//! [`super::inflate`], primed with [`SPDY_DICTIONARY`].
//!
//! Header names are lower case on the wire (the Go framer the kubelet uses
//! rejects others); several values of one name are joined with NUL.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::inflate::{adler32, InflateError, Inflater};

/// The SPDY version this codec speaks.
pub const VERSION: u16 = 3;

/// Control frame types (section 2.6).
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN on SYN_STREAM, SYN_REPLY, HEADERS and DATA.
const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS on SETTINGS.
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Largest payload a frame's 24-bit length can carry.
pub const MAX_FRAME_PAYLOAD: usize = 0x00ff_ffff;
/// Largest decoded header block accepted from the peer.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// RST_STREAM status codes (section 2.6.3).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
}

/// GOAWAY status codes (section 2.6.6).
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// Header name/value pairs, in order; names lower case.
pub type Headers = Vec<(String, String)>;

/// One SETTINGS entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 24 bits.
    pub id: u32,
    pub value: u32,
}

/// A SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
}

/// Why bytes from the peer are not SPDY/3 this codec can use.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("{kind} frame of {len} bytes is malformed")]
    Malformed { kind: &'static str, len: usize },
    #[error("header block: {0}")]
    HeaderBlock(&'static str),
    #[error("header block does not decompress: {0}")]
    Inflate(#[from] InflateError),
    #[error("frame payload of {0} bytes does not fit in 24 bits")]
    TooLarge(usize),
    #[error("header name {0:?} is not lower case")]
    UppercaseName(String),
}

type Result<T> = std::result::Result<T, SpdyError>;

/// Encodes frames for one direction and decodes the other, keeping each
/// direction's zlib stream.
pub struct FrameCodec {
    compressor: HeaderCompressor,
    decompressor: Inflater,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            compressor: HeaderCompressor::default(),
            decompressor: Inflater::with_dictionary(SPDY_DICTIONARY, MAX_HEADER_BLOCK),
        }
    }
}

impl FrameCodec {
    /// Append `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<()> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                check_len(data.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(u32::from(flag(*fin, FLAG_FIN)) << 24 | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.compressor.compress(&encode_header_block(headers)?);
                let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
                control(out, SYN_STREAM, flags, 10 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(0); // slot
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                let block = self.compressor.compress(&encode_header_block(headers)?);
                control(out, kind, flag(*fin, FLAG_FIN), 4 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { clear, entries } => {
                control(
                    out,
                    SETTINGS,
                    flag(*clear, FLAG_CLEAR_SETTINGS),
                    4 + 8 * entries.len(),
                )?;
                out.put_u32(entries.len() as u32);
                for entry in entries {
                    out.put_u32(u32::from(entry.flags) << 24 | (entry.id & 0x00ff_ffff));
                    out.put_u32(entry.value);
                }
            }
            Frame::Ping { id } => {
                control(out, PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, WINDOW_UPDATE, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
        }
        Ok(())
    }

    /// Take one whole frame off the front of `buf`, if it holds one.
    /// Control frames of unknown types are skipped, as the spec asks.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
            if buf.len() < 8 + len {
                buf.reserve(8 + len - buf.len());
                return Ok(None);
            }
            let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let flags = buf[4];
            buf.advance(8);
            let mut payload = buf.split_to(len).freeze();
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: first & 0x7fff_ffff,
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                }));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(SpdyError::Version(version));
            }
            let kind = (first & 0xffff) as u16;
            let malformed = |kind: &'static str| SpdyError::Malformed { kind, len };
            let frame = match kind {
                SYN_STREAM => {
                    if len < 10 {
                        return Err(malformed("SYN_STREAM"));
                    }
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    let associated_to = payload.get_u32() & 0x7fff_ffff;
                    let priority = payload.get_u8() >> 5;
                    payload.advance(1);
                    Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        fin: flags & FLAG_FIN != 0,
                        unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                        headers: self.headers(&payload)?,
                    }
                }
                SYN_REPLY | HEADERS => {
                    if len < 4 {
                        return Err(malformed("SYN_REPLY/HEADERS"));
                    }
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    let fin = flags & FLAG_FIN != 0;
                    let headers = self.headers(&payload)?;
                    if kind == SYN_REPLY {
                        Frame::SynReply {
                            stream_id,
                            fin,
                            headers,
                        }
                    } else {
                        Frame::Headers {
                            stream_id,
                            fin,
                            headers,
                        }
                    }
                }
                RST_STREAM => {
                    if len != 8 {
                        return Err(malformed("RST_STREAM"));
                    }
                    Frame::RstStream {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        status: payload.get_u32(),
                    }
                }
                SETTINGS => {
                    if len < 4 {
                        return Err(malformed("SETTINGS"));
                    }
                    let count = payload.get_u32() as usize;
                    if payload.len() != count.saturating_mul(8) {
                        return Err(malformed("SETTINGS"));
                    }
                    let entries = (0..count)
                        .map(|_| {
                            let word = payload.get_u32();
                            Setting {
                                flags: (word >> 24) as u8,
                                id: word & 0x00ff_ffff,
                                value: payload.get_u32(),
                            }
                        })
                        .collect();
                    Frame::Settings {
                        clear: flags & FLAG_CLEAR_SETTINGS != 0,
                        entries,
                    }
                }
                PING => {
                    if len != 4 {
                        return Err(malformed("PING"));
                    }
                    Frame::Ping {
                        id: payload.get_u32(),
                    }
                }
                GOAWAY => {
                    if len != 8 {
                        return Err(malformed("GOAWAY"));
                    }
                    Frame::GoAway {
                        last_good_stream_id: payload.get_u32() & 0x7fff_ffff,
                        status: payload.get_u32(),
                    }
                }
                WINDOW_UPDATE => {
                    if len != 8 {
                        return Err(malformed("WINDOW_UPDATE"));
                    }
                    Frame::WindowUpdate {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        delta: payload.get_u32() & 0x7fff_ffff,
                    }
                }
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers> {
        let block = self.decompressor.inflate_flushed(compressed)?;
        decode_header_block(&block)
    }
}

fn flag(set: bool, bit: u8) -> u8 {
    if set {
        bit
    } else {
        0
    }
}

fn check_len(len: usize) -> Result<()> {
    if len > MAX_FRAME_PAYLOAD {
        return Err(SpdyError::TooLarge(len));
    }
    Ok(())
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, len: usize) -> Result<()> {
    check_len(len)?;
    out.reserve(8 + len);
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32(u32::from(flags) << 24 | len as u32);
    Ok(())
}

/// The uncompressed name/value block (section 2.6.10): a 32-bit count, then
/// length-prefixed names and values.
pub fn encode_header_block(headers: &Headers) -> Result<Vec<u8>> {
    let mut merged: Vec<(&str, String)> = Vec::new();
    for (name, value) in headers {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(SpdyError::UppercaseName(name.clone()));
        }
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some((_, joined)) => {
                joined.push('\0');
                joined.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut block = Vec::new();
    block.put_u32(merged.len() as u32);
    for (name, value) in merged {
        block.put_u32(name.len() as u32);
        block.put_slice(name.as_bytes());
        block.put_u32(value.len() as u32);
        block.put_slice(value.as_bytes());
    }
    Ok(block)
}

/// Parse an uncompressed name/value block; NUL-joined values come back as
/// separate pairs.
pub fn decode_header_block(mut block: &[u8]) -> Result<Headers> {
    fn take<'a>(block: &mut &'a [u8]) -> Result<&'a [u8]> {
        if block.len() < 4 {
            return Err(SpdyError::HeaderBlock("truncated length"));
        }
        let len = block.get_u32() as usize;
        if block.len() < len {
            return Err(SpdyError::HeaderBlock("truncated name or value"));
        }
        let (field, rest) = block.split_at(len);
        *block = rest;
        Ok(field)
    }
    if block.len() < 4 {
        return Err(SpdyError::HeaderBlock("no count"));
    }
    let count = block.get_u32();
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take(&mut block)?;
        let value = take(&mut block)?;
        if name.is_empty() {
            return Err(SpdyError::HeaderBlock("empty name"));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(SpdyError::UppercaseName(name));
        }
        for value in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(value).into_owned()));
        }
    }
    if !block.is_empty() {
        return Err(SpdyError::HeaderBlock("bytes after the last pair"));
    }
    Ok(headers)
}

/// Our side's zlib stream: a header naming the SPDY dictionary, then every
/// block as stored deflate blocks followed by the empty stored block that
/// `Z_SYNC_FLUSH` writes. The marker matters: Go's inflater hands out what
/// it decoded only at a sync marker (or a full window), so without it the
/// peer's framer stalls on the next block header.
/// An empty stored block: what `Z_SYNC_FLUSH` ends with.
const SYNC_FLUSH_MARKER: [u8; 5] = [0x00, 0x00, 0x00, 0xff, 0xff];

#[derive(Default)]
struct HeaderCompressor {
    started: bool,
}

impl HeaderCompressor {
    fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 16);
        if !self.started {
            self.started = true;
            // CMF 0x78: deflate, 32 KiB window; FLG 0xbb: FDICT, level 2,
            // check bits so that 0x78bb is a multiple of 31.
            out.extend_from_slice(&[0x78, 0xbb]);
            out.extend_from_slice(&adler32(SPDY_DICTIONARY).to_be_bytes());
        }
        for chunk in block.chunks(0xffff) {
            let len = chunk.len() as u16;
            out.push(0x00); // BFINAL=0, BTYPE=00 (stored), padding
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&SYNC_FLUSH_MARKER);
        out
    }
}

/// The SPDY/3 header compression dictionary (section 2.6.10.1), byte exact:
/// the peer checks its Adler-32 (0xe3c6a7c2) before inflating.
#[rustfmt::skip]
pub static SPDY_DICTIONARY: &[u8] = &[
    0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x00, 0x00, 0x04, 0x68, // ....options....h
    0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70, // ead....post....p
    0x75, 0x74, 0x00, 0x00, 0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05, // ut....delete....
    0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x00, // trace....accept.
    0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, // ...accept-charse
    0x74, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, // t....accept-enco
    0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x6c, // ding....accept-l
    0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70, // anguage....accep
    0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00, // t-ranges....age.
    0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x75, 0x74, 0x68, // ...allow....auth
    0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63, // orization....cac
    0x68, 0x65, 0x2d, 0x63, 0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f, // he-control....co
    0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, // nnection....cont
    0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, // ent-base....cont
    0x65, 0x6e, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, // ent-encoding....
    0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, // content-language
    0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67, // ....content-leng
    0x74, 0x68, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f, // th....content-lo
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, // cation....conten
    0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, // t-md5....content
    0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, // -range....conten
    0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00, 0x04, 0x64, 0x61, 0x74, 0x65, 0x00, 0x00, // t-type....date..
    0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00, 0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74, // ..etag....expect
    0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x70, 0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66, // ....expires....f
    0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x08, 0x69, // rom....host....i
    0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f, // f-match....if-mo
    0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d, // dified-since....
    0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, // if-none-match...
    0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d, // .if-range....if-
    0x75, 0x6e, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, // unmodified-since
    0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65, // ....last-modifie
    0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, // d....location...
    0x0c, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00, // .max-forwards...
    0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70, 0x72, 0x6f, 0x78, 0x79, // .pragma....proxy
    0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00, // -authenticate...
    0x13, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61, // .proxy-authoriza
    0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, // tion....range...
    0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72, 0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72, // .referer....retr
    0x79, 0x2d, 0x61, 0x66, 0x74, 0x65, 0x72, 0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65, // y-after....serve
    0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00, 0x00, 0x00, 0x07, 0x74, 0x72, 0x61, 0x69, 0x6c, // r....te....trail
    0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65, // er....transfer-e
    0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61, // ncoding....upgra
    0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74, // de....user-agent
    0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79, 0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00, // ....vary....via.
    0x00, 0x00, 0x07, 0x77, 0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77, // ...warning....ww
    0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, // w-authenticate..
    0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00, // ..method....get.
    0x00, 0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30, // ...status....200
    0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x00, 0x00, //  OK....version..
    0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72, // ..HTTP/1.1....ur
    0x6c, 0x00, 0x00, 0x00, 0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73, // l....public....s
    0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x65, // et-cookie....kee
    0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00, 0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69, // p-alive....origi
    0x6e, 0x31, 0x30, 0x30, 0x31, 0x30, 0x31, 0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35, // n100101201202205
    0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30, 0x32, 0x33, 0x30, 0x33, 0x33, 0x30, 0x34, 0x33, // 2063003023033043
    0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37, 0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30, // 0530630740240540
    0x36, 0x34, 0x30, 0x37, 0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31, // 6407408409410411
    0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35, 0x34, 0x31, 0x36, 0x34, // 4124134144154164
    0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34, 0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e, // 17502504505203 N
    0x6f, 0x6e, 0x2d, 0x41, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65, // on-Authoritative
    0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x32, 0x30, 0x34, 0x20, //  Information204 
    0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f, // No Content301 Mo
    0x76, 0x65, 0x64, 0x20, 0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34, // ved Permanently4
    0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x34, 0x30, // 00 Bad Request40
    0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30, // 1 Unauthorized40
    0x33, 0x20, 0x46, 0x6f, 0x72, 0x62, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e, // 3 Forbidden404 N
    0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35, 0x30, 0x30, 0x20, 0x49, 0x6e, 0x74, 0x65, // ot Found500 Inte
    0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72, 0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f, // rnal Server Erro
    0x72, 0x35, 0x30, 0x31, 0x20, 0x4e, 0x6f, 0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65, // r501 Not Impleme
    0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20, 0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x20, // nted503 Service 
    0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61, 0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46, // UnavailableJan F
    0x65, 0x62, 0x20, 0x4d, 0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a, // eb Mar Apr May J
    0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53, 0x65, 0x70, 0x74, 0x20, // un Jul Aug Sept 
    0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30, // Oct Nov Dec 00:0
    0x30, 0x3a, 0x30, 0x30, 0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57, // 0:00 Mon, Tue, W
    0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69, 0x2c, 0x20, 0x53, 0x61, // ed, Thu, Fri, Sa
    0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20, 0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b, // t, Sun, GMTchunk
    0x65, 0x64, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61, // ed,text/html,ima
    0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x6a, 0x70, 0x67, // ge/png,image/jpg
    0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67, 0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69, // ,image/gif,appli
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69, // cation/xml,appli
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68, 0x74, 0x6d, 0x6c, 0x2b, 0x78, 0x6d, 0x6c, // cation/xhtml+xml
    0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c, 0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74, // ,text/plain,text
    0x2f, 0x6a, 0x61, 0x76, 0x61, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c, // /javascript,publ
    0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74, 0x65, 0x6d, 0x61, 0x78, 0x2d, 0x61, 0x67, 0x65, // icprivatemax-age
    0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65, 0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64, // =gzip,deflate,sd
    0x63, 0x68, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63, // chcharset=utf-8c
    0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38, 0x38, 0x35, 0x39, 0x2d, // harset=iso-8859-
    0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a, 0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e, // 1,utf-,*,enq=0.
];

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = BytesMut::new();
        FrameCodec::default().encode(frame, &mut out).unwrap();
        out.to_vec()
    }

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        frames
    }

    #[test]
    fn dictionary_is_the_spec_one() {
        assert_eq!(SPDY_DICTIONARY.len(), 1423);
        assert_eq!(adler32(SPDY_DICTIONARY), 0xe3c6_a7c2);
        assert!(SPDY_DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(SPDY_DICTIONARY.ends_with(b",utf-,*,enq=0."));
    }

    #[test]
    fn fixed_layout_frames_match_the_spec_bytes() {
        // Control frames: 1 bit control, 15 bits version (3), 16 bits type,
        // 8 bits flags, 24 bits length (section 2.2).
        assert_eq!(
            encoded(&Frame::Ping { id: 1 }),
            [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01]
        );
        assert_eq!(
            encoded(&Frame::RstStream {
                stream_id: 5,
                status: rst::CANCEL
            }),
            [0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 5, 0, 0, 0, 5]
        );
        assert_eq!(
            encoded(&Frame::GoAway {
                last_good_stream_id: 7,
                status: goaway::OK
            }),
            [0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 7, 0, 0, 0, 0]
        );
        assert_eq!(
            encoded(&Frame::WindowUpdate {
                stream_id: 3,
                delta: 65_536
            }),
            [0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 3, 0, 1, 0, 0]
        );
        // SETTINGS_INITIAL_WINDOW_SIZE (7) = 65536, persisted flag 0x01.
        assert_eq!(
            encoded(&Frame::Settings {
                clear: false,
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 65_536
                }]
            }),
            [
                0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0c, 0, 0, 0, 1, 0x01, 0, 0, 7, 0, 1, 0,
                0
            ]
        );
        // Data frames: 0 bit, 31 bits stream id, flags, 24 bits length.
        assert_eq!(
            encoded(&Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"abc")
            }),
            [0, 0, 0, 1, 0x01, 0, 0, 3, b'a', b'b', b'c']
        );
    }

    #[test]
    fn syn_stream_layout_and_zlib_header() {
        let bytes = encoded(&Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: vec![("streamtype".into(), "error".into())],
        });
        let block = encode_header_block(&vec![("streamtype".into(), "error".into())]).unwrap();
        // header (8) + ids and priority (10) + zlib header (6) + stored block
        // (5 + n) + sync flush marker (5)
        assert_eq!(bytes.len(), 8 + 10 + 6 + 5 + block.len() + 5);
        assert_eq!(
            &bytes[4..8],
            [0, 0, 0, (10 + 6 + 5 + block.len() + 5) as u8]
        );
        assert_eq!(&bytes[..4], [0x80, 0x03, 0x00, 0x01]);
        assert_eq!(&bytes[8..18], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[18..24], [0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2]);
        assert_eq!(bytes[24], 0x00);
        let len = block.len() as u16;
        assert_eq!(&bytes[25..27], len.to_le_bytes());
        assert_eq!(&bytes[27..29], (!len).to_le_bytes());
        assert_eq!(&bytes[29..29 + block.len()], block);
        assert_eq!(&bytes[29 + block.len()..], [0x00, 0x00, 0x00, 0xff, 0xff]);
    }

    #[test]
    fn every_frame_round_trips_through_one_connection() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 2,
                fin: false,
                unidirectional: true,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 1,
                priority: 7,
                fin: true,
                unidirectional: false,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                fin: true,
                headers: vec![("x".into(), "1".into()), ("x".into(), "2".into())],
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from(vec![7u8; 70_000]),
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::REFUSED_STREAM,
            },
            Frame::Settings {
                clear: true,
                entries: vec![
                    Setting {
                        flags: 0,
                        id: 4,
                        value: 100,
                    },
                    Setting {
                        flags: 2,
                        id: 7,
                        value: 1 << 20,
                    },
                ],
            },
            Frame::Ping { id: 2 },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: goaway::PROTOCOL_ERROR,
            },
        ];
        let mut codec = FrameCodec::default();
        let mut wire = BytesMut::new();
        for frame in &frames {
            codec.encode(frame, &mut wire).unwrap();
        }
        // Fed one byte at a time, the decoder waits for whole frames.
        let mut decoder = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire {
            buf.put_u8(byte);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(decoded, frames);
    }

    #[test]
    fn decodes_header_blocks_compressed_by_real_zlib_with_the_dictionary() {
        // CPython's zlib (the reference implementation), level 9, primed with
        // the SPDY dictionary, Z_SYNC_FLUSH after each block: what Go's
        // compress/zlib sends too. The first block refers into the dictionary.
        let first: &[u8] = &[
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xa6, 0x23, 0x46, 0x70, 0x3a, 0x2b, 0x29,
            0x4a, 0x4d, 0xcc, 0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80, 0x06, 0x00, 0x00, 0x00,
            0xff, 0xff,
        ];
        let second: &[u8] = &[
            0xc2, 0x2a, 0x05, 0x4c, 0xcc, 0x29, 0xf9, 0xa5, 0x25, 0x00, 0x00, 0x00, 0x00, 0xff,
            0xff,
        ];
        // A larger block that zlib codes with dynamic Huffman tables.
        let third: &[u8] = &[
            0xac, 0xd7, 0x4d, 0x4b, 0x04, 0x31, 0x0c, 0x06, 0xe0, 0xb3, 0x78, 0x11, 0xbd, 0xea,
            0x55, 0x41, 0x28, 0xb4, 0x49, 0x3f, 0xf5, 0xaa, 0x3f, 0x64, 0x15, 0xd1, 0x5d, 0xbc,
            0x89, 0xe2, 0xcf, 0xb7, 0xb1, 0x85, 0xa4, 0xab, 0x65, 0xa6, 0x33, 0x73, 0xdb, 0x92,
            0xe4, 0x65, 0xe1, 0xc9, 0x0c, 0x9d, 0xfc, 0xeb, 0x96, 0x6a, 0xdf, 0x8a, 0x5e, 0xe0,
            0xf9, 0x59, 0xd1, 0xb4, 0xc9, 0x5f, 0xbb, 0xf7, 0xcf, 0x17, 0xa5, 0x55, 0x53, 0xa1,
            0xbd, 0x3e, 0x2f, 0x15, 0xa3, 0x76, 0x4f, 0xcf, 0xf9, 0xaf, 0xbe, 0xbe, 0xed, 0x0f,
            0x4d, 0x0f, 0xe4, 0xd3, 0x65, 0xe9, 0x01, 0xd1, 0xd3, 0xe9, 0xc6, 0x7c, 0xba, 0x2e,
            0xdd, 0xf8, 0x6f, 0x77, 0x67, 0xce, 0xe6, 0x93, 0x2e, 0x73, 0x76, 0x62, 0xae, 0x93,
            0x40, 0x2f, 0xe2, 0xbb, 0x92, 0xe0, 0x66, 0x27, 0x74, 0xb2, 0x7c, 0x3e, 0x3d, 0x94,
            0x2c, 0xbf, 0x20, 0xab, 0x93, 0x1a, 0xd8, 0x21, 0xb4, 0x0e, 0x91, 0x1d, 0x62, 0xcf,
            0x21, 0xb1, 0x43, 0xea, 0x39, 0x9c, 0xb2, 0x2c, 0xa1, 0xdf, 0x54, 0x5a, 0x3d, 0x2d,
            0x21, 0x26, 0x69, 0x29, 0x4c, 0x9d, 0x34, 0x23, 0x16, 0x22, 0x83, 0x96, 0xe6, 0xbe,
            0x66, 0xc0, 0x32, 0x0d, 0x91, 0x46, 0x4b, 0xf5, 0x58, 0xd3, 0x70, 0xad, 0x87, 0xc8,
            0xa5, 0xa5, 0x3b, 0xa9, 0xb9, 0x56, 0xb5, 0x35, 0x5a, 0xa7, 0x8b, 0x5a, 0x73, 0xaa,
            0x97, 0x40, 0x8b, 0x72, 0x55, 0xbb, 0xfc, 0x0c, 0x95, 0x20, 0x54, 0xc2, 0x90, 0x4a,
            0x14, 0x2a, 0x71, 0xa1, 0x4a, 0x12, 0x2a, 0x69, 0xad, 0x0a, 0x68, 0x56, 0x01, 0xbd,
            0x9d, 0x0a, 0x18, 0x56, 0x01, 0xd3, 0xaa, 0x00, 0xb0, 0x0a, 0x40, 0x4f, 0x05, 0x90,
            0x55, 0x00, 0xa7, 0x55, 0xc0, 0xb2, 0x0a, 0xd8, 0x11, 0x15, 0x70, 0xac, 0x02, 0x6e,
            0x99, 0x0a, 0x78, 0x56, 0x01, 0xbf, 0x5a, 0x25, 0x08, 0x95, 0xb0, 0xa1, 0x4a, 0x14,
            0x2a, 0xf1, 0x48, 0x25, 0x09, 0x95, 0xd4, 0x53, 0x41, 0xcd, 0x2a, 0xa8, 0xa7, 0x55,
            0xd0, 0xb0, 0x0a, 0x9a, 0x11, 0x15, 0x04, 0x56, 0x41, 0x58, 0xa6, 0x82, 0xc8, 0x2a,
            0x88, 0x6b, 0x55, 0xd0, 0xb2, 0x0a, 0xda, 0xed, 0x54, 0xd0, 0xb1, 0x0a, 0xba, 0x56,
            0x05, 0x3d, 0xab, 0xa0, 0xef, 0xaa, 0x04, 0xa1, 0x12, 0x66, 0xa8, 0x44, 0xa1, 0x12,
            0x87, 0x54, 0x92, 0x50, 0x49, 0x23, 0x2a, 0xc7, 0x5f, 0x53, 0x67, 0xf2, 0x72, 0x76,
            0xf8, 0xf8, 0xbd, 0xa9, 0xff, 0xb9, 0xc8, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        assert_eq!((third[0] >> 1) & 3, 2, "the third block is dynamic");
        let mut wire = Vec::new();
        for (id, block) in [(1u32, first), (3, second), (5, third)] {
            wire.extend_from_slice(&[0x80, 0x03, 0x00, 0x02, 0x00, 0x00]);
            wire.extend_from_slice(&((4 + block.len()) as u16).to_be_bytes());
            wire.extend_from_slice(&id.to_be_bytes());
            wire.extend_from_slice(block);
        }
        let frames = decode_all(&wire);
        let mut big: Headers = (0..40)
            .map(|i| {
                (
                    format!("x-header-{i}"),
                    format!("value-{i}-{}", "abcdefghij".repeat(i % 7)),
                )
            })
            .collect();
        big.push(("content-type".into(), "application/json".into()));
        big.push(("status".into(), "200 OK".into()));
        assert_eq!(
            frames,
            vec![
                Frame::SynReply {
                    stream_id: 1,
                    fin: false,
                    headers: vec![("streamtype".into(), "error".into())]
                },
                Frame::SynReply {
                    stream_id: 3,
                    fin: false,
                    headers: vec![("streamtype".into(), "stdout".into())]
                },
                Frame::SynReply {
                    stream_id: 5,
                    fin: false,
                    headers: big
                },
            ]
        );
    }

    #[test]
    fn header_blocks_join_values_and_require_lower_case() {
        let headers: Headers = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
        let block = encode_header_block(&headers).unwrap();
        assert_eq!(block, b"\0\0\0\x01\0\0\0\x01a\0\0\0\x031\x002");
        assert_eq!(decode_header_block(&block).unwrap(), headers);
        assert!(matches!(
            encode_header_block(&vec![("streamType".into(), "stdin".into())]),
            Err(SpdyError::UppercaseName(_))
        ));
        assert!(matches!(
            decode_header_block(b"\0\0\0\x01\0\0\0\x01A\0\0\0\0"),
            Err(SpdyError::UppercaseName(_))
        ));
        assert!(decode_header_block(b"\0\0\0\x02\0\0\0\x01a\0\0\0\0").is_err());
    }

    #[test]
    fn skips_unknown_control_frames_and_rejects_other_versions() {
        let mut wire = vec![0x80, 0x03, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x02, 0xaa, 0xbb];
        wire.extend_from_slice(&encoded(&Frame::Ping { id: 9 }));
        assert_eq!(decode_all(&wire), vec![Frame::Ping { id: 9 }]);

        let mut buf = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(
            FrameCodec::default().decode(&mut buf),
            Err(SpdyError::Version(2))
        ));
        let mut buf = BytesMut::from(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 1][..]);
        assert!(matches!(
            FrameCodec::default().decode(&mut buf),
            Err(SpdyError::Malformed { .. })
        ));
    }
}

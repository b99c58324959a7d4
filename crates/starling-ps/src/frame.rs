//! The wire format (design.md, decision 7): length-prefixed frames with a versioned header.
//!
//! ```text
//! frame   = len:u32  version:u8  kind:u8  flags:u16  id:u32  payload[len - 8]
//! Hello   = token_len:u16 token  role_len:u16 role        (first frame of every connection)
//! Pull    = table:u32 n:u32 keys                           (keys strictly increasing)
//! Push    = table:u32 n:u32 keys values:[f32|f16; n * dim]
//! keys    = [u64; n]                                        (plain)
//!         | bytes:u32 [varint; n]                           (FLAG_DELTA_KEYS: the first key, then
//!                                                            each key's distance from the one before)
//! Values  = values:[f32|f16; ...]                          (reply to Pull)
//! Ack     = empty                                          (reply to Push, Hello)
//! Error   = utf-8 message
//! Control = JSON-encoded control message (coordinator traffic)
//! ```
//! All integers and floats are little-endian. `len` is checked against a bound before any
//! allocation, so a hostile or corrupt length cannot exhaust memory.

use std::io::Read;

/// Version of this protocol; peers of another version are refused at the first frame (2: the
/// delta-encoded keys of [`FLAG_DELTA_KEYS`]).
pub const VERSION: u8 = 2;
/// Bytes of `len` plus the header fields.
pub const HEADER_LEN: usize = 12;
/// Default bound on a frame's payload: 1 GiB, enough for a pull of ~100M floats.
pub const DEFAULT_MAX_FRAME: usize = 1 << 30;
/// Flag: value arrays are IEEE f16 instead of f32.
pub const FLAG_F16: u16 = 1;
/// Flag: a request's keys are delta-encoded LEB128 varints (compact when keys are folded to few
/// bits; a reply carries no keys).
pub const FLAG_DELTA_KEYS: u16 = 2;

#[cfg(target_endian = "big")]
compile_error!("the wire format assumes a little-endian host");

/// Kind of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Authentication, first on every connection.
    Hello = 1,
    /// Success with no data.
    Ack = 2,
    /// A refusal with a message.
    Error = 3,
    /// Pull request.
    Pull = 4,
    /// Pull reply.
    Values = 5,
    /// Push request.
    Push = 6,
    /// Coordinator traffic.
    Control = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Ack,
            3 => Kind::Error,
            4 => Kind::Pull,
            5 => Kind::Values,
            6 => Kind::Push,
            7 => Kind::Control,
            _ => return None,
        })
    }
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Length over the bound.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Length too small to hold the header.
    #[error("frame length {0} is shorter than its header")]
    TooShort(u32),
    /// Another protocol version.
    #[error("protocol version {got} is not supported (this build speaks version {VERSION})")]
    Version {
        /// Version the peer sent.
        got: u8,
    },
    /// A kind byte this version does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Payload shorter than its fields say.
    #[error("truncated {what}: needs {need} bytes, has {have}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Payload longer than its fields say.
    #[error("{what} has {extra} unexpected trailing bytes")]
    Trailing {
        /// What was being decoded.
        what: &'static str,
        /// Extra bytes.
        extra: usize,
    },
    /// A frame that is not allowed here (e.g. anything before Hello).
    #[error("unexpected {got:?} frame, expected {expected}")]
    Unexpected {
        /// Kind received.
        got: Kind,
        /// What was expected.
        expected: &'static str,
    },
    /// Hello with the wrong token.
    #[error("authentication failed: the token does not match (set the same STARLING_TOKEN on every process)")]
    BadToken,
    /// Text that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// A delta-encoded key list that does not decode.
    #[error("malformed keys in {0}")]
    Keys(String),
    /// A control message that does not decode.
    #[error("malformed control message: {0}")]
    Control(String),
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Frame kind.
    pub kind: Kind,
    /// Flag bits ([`FLAG_F16`]).
    pub flags: u16,
    /// Request id, echoed by the reply.
    pub id: u32,
    /// Payload bytes that follow.
    pub len: usize,
}

/// Encodes a header for a payload of `len` bytes.
pub fn encode_header(kind: Kind, flags: u16, id: u32, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&((len + 8) as u32).to_le_bytes());
    h[4] = VERSION;
    h[5] = kind as u8;
    h[6..8].copy_from_slice(&flags.to_le_bytes());
    h[8..12].copy_from_slice(&id.to_le_bytes());
    h
}

/// Decodes and checks a header: the length bound first, then version and kind.
pub fn decode_header(h: &[u8; HEADER_LEN], max: usize) -> Result<Header, FrameError> {
    let total = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if total < 8 {
        return Err(FrameError::TooShort(total));
    }
    let len = total as usize - 8;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if h[4] != VERSION {
        return Err(FrameError::Version { got: h[4] });
    }
    let kind = Kind::from_u8(h[5]).ok_or(FrameError::UnknownKind(h[5]))?;
    Ok(Header {
        kind,
        flags: u16::from_le_bytes([h[6], h[7]]),
        id: u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
        len,
    })
}

/// Appends a whole frame (header and payload) to `out`.
pub fn write_frame(out: &mut Vec<u8>, kind: Kind, flags: u16, id: u32, payload: &[u8]) {
    out.extend_from_slice(&encode_header(kind, flags, id, payload.len()));
    out.extend_from_slice(payload);
}

/// Outcome of reading a frame from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid frame.
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// Reads one frame from a blocking stream into `payload` (resized to fit, after the bound check).
pub fn read_frame<R: Read>(r: &mut R, max: usize, payload: &mut Vec<u8>) -> Result<Header, ReadError> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    let header = decode_header(&h, max)?;
    payload.clear();
    payload.resize(header.len, 0);
    r.read_exact(payload)?;
    Ok(header)
}

/// Reads little-endian fields off a payload, naming what is truncated.
pub struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`, which holds a `what`.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, what }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated { what: self.what, need: n, have: self.buf.len() });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails if bytes remain.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Trailing { what: self.what, extra: self.buf.len() })
        }
    }
}

/// Largest Hello payload: a token and a role of up to `u16::MAX` bytes each, with their lengths.
/// Before a peer has authenticated, no frame may be larger.
pub const MAX_HELLO: usize = 2 * (2 + u16::MAX as usize);

/// A Hello payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Shared secret.
    pub token: Vec<u8>,
    /// Who is connecting (`"worker 3"`), for the peer's log.
    pub role: String,
}

impl Hello {
    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.token.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.token);
        out.extend_from_slice(&(self.role.len() as u16).to_le_bytes());
        out.extend_from_slice(self.role.as_bytes());
    }

    /// Decodes a payload.
    pub fn decode(p: &[u8]) -> Result<Hello, FrameError> {
        let mut c = Cursor::new(p, "hello");
        let n = c.u16()? as usize;
        let token = c.take(n)?.to_vec();
        let n = c.u16()? as usize;
        let role = std::str::from_utf8(c.take(n)?).map_err(|_| FrameError::Utf8("role"))?.to_string();
        c.finish()?;
        Ok(Hello { token, role })
    }

    /// Checks the token in constant time (no early exit on the first differing byte).
    pub fn check(&self, token: &[u8]) -> Result<(), FrameError> {
        let same =
            self.token.len() == token.len() && self.token.iter().zip(token).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
        if same {
            Ok(())
        } else {
            Err(FrameError::BadToken)
        }
    }
}

/// Bytes per value under `flags`.
#[inline]
pub fn value_bytes(flags: u16) -> usize {
    if flags & FLAG_F16 != 0 {
        2
    } else {
        4
    }
}

/// Appends `values` as f32 or (with [`FLAG_F16`]) f16.
pub fn encode_values(values: &[f32], flags: u16, out: &mut Vec<u8>) {
    if flags & FLAG_F16 == 0 {
        out.extend_from_slice(bytemuck::cast_slice(values));
        return;
    }
    let at = out.len();
    out.resize(at + values.len() * value_bytes(flags), 0);
    encode_values_into(values, flags, &mut out[at..]);
}

/// Writes `values` as f32 or (with [`FLAG_F16`]) f16 into `out`, exactly
/// `values.len() * value_bytes(flags)` bytes.
pub fn encode_values_into(values: &[f32], flags: u16, out: &mut [u8]) {
    if flags & FLAG_F16 != 0 {
        for (b, &v) in out.chunks_exact_mut(2).zip(values) {
            b.copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
    } else {
        out.copy_from_slice(bytemuck::cast_slice(values));
    }
}

/// Decodes exactly `out.len()` values from `bytes`.
pub fn decode_values(bytes: &[u8], flags: u16, out: &mut [f32], what: &'static str) -> Result<(), FrameError> {
    let need = out.len() * value_bytes(flags);
    if bytes.len() < need {
        return Err(FrameError::Truncated { what, need, have: bytes.len() });
    }
    if bytes.len() > need {
        return Err(FrameError::Trailing { what, extra: bytes.len() - need });
    }
    if flags & FLAG_F16 != 0 {
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        }
    } else {
        bytemuck::cast_slice_mut::<f32, u8>(out).copy_from_slice(bytes);
    }
    Ok(())
}

/// A receive buffer whose bytes start 8-byte aligned, so the keys and f32 values of a payload
/// (at offsets 8 and `8 + 8n`) can be read in place instead of copied out.
#[derive(Debug, Default)]
pub struct Payload {
    words: Vec<u64>,
    len: usize,
}

impl Payload {
    /// Sets the length to `len` bytes (contents unspecified) and returns them to be filled.
    pub fn resize(&mut self, len: usize) -> &mut [u8] {
        self.words.resize(len.div_ceil(8), 0);
        self.len = len;
        &mut bytemuck::cast_slice_mut(&mut self.words)[..len]
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// Makes this buffer one frame with a payload of `len` bytes: writes the header and returns
    /// the payload (contents unspecified) to be filled. The payload starts 4-byte aligned.
    pub fn frame(&mut self, kind: Kind, flags: u16, id: u32, len: usize) -> &mut [u8] {
        let buf = self.resize(HEADER_LEN + len);
        buf[..HEADER_LEN].copy_from_slice(&encode_header(kind, flags, id, len));
        &mut buf[HEADER_LEN..]
    }
}

/// Appends `keys` as `flags` asks ([`FLAG_DELTA_KEYS`] or plain).
fn encode_keys(keys: &[u64], flags: u16, out: &mut Vec<u8>) {
    if flags & FLAG_DELTA_KEYS == 0 {
        out.extend_from_slice(bytemuck::cast_slice(keys));
        return;
    }
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut prev = 0u64;
    for &k in keys {
        let mut d = k.wrapping_sub(prev);
        prev = k;
        while d >= 0x80 {
            out.push(d as u8 | 0x80);
            d >>= 7;
        }
        out.push(d as u8);
    }
    let bytes = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&bytes.to_le_bytes());
}

/// Decodes `n` delta-encoded keys from `bytes` into `keys`; refuses overlong or overflowing
/// varints, so every key list has exactly one encoding.
fn decode_delta_keys(bytes: &[u8], n: usize, keys: &mut Vec<u64>, what: &'static str) -> Result<(), FrameError> {
    let bad = |why: &str| FrameError::Keys(format!("{what}: {why}"));
    keys.clear();
    let mut prev = 0u64;
    let mut it = bytes.iter();
    for i in 0..n {
        let (mut d, mut shift) = (0u64, 0u32);
        loop {
            let Some(&b) = it.next() else {
                return Err(bad(&format!("the bytes end inside key {i} of {n}")));
            };
            let part = u64::from(b & 0x7F);
            if shift == 63 && part > 1 || shift > 63 {
                return Err(bad("a key distance overflows 64 bits"));
            }
            d |= part << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(bad("a key distance has a redundant trailing byte"));
                }
                break;
            }
            shift += 7;
        }
        prev = if i == 0 { d } else { prev.checked_add(d).ok_or_else(|| bad("a key overflows 64 bits"))? };
        keys.push(prev);
    }
    let extra = it.len();
    if extra > 0 {
        return Err(FrameError::Trailing { what, extra });
    }
    Ok(())
}

/// Appends a Pull payload.
pub fn encode_pull(table: u32, keys: &[u64], flags: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&table.to_le_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    encode_keys(keys, flags, out);
}

/// Decodes a key array header and keys; returns the table, the keys (in place in `p` when it is
/// 8-byte aligned and the keys are plain, else decoded into `scratch`) and the bytes after them.
fn decode_keys<'a>(
    p: &'a [u8],
    flags: u16,
    scratch: &'a mut Vec<u64>,
    what: &'static str,
) -> Result<(u32, &'a [u64], &'a [u8]), FrameError> {
    let mut c = Cursor::new(p, what);
    let table = c.u32()?;
    let n = c.u32()? as usize;
    if flags & FLAG_DELTA_KEYS != 0 {
        let bytes = c.u32()? as usize;
        let bytes = c.take(bytes)?;
        // Every key takes at least one byte, so `n` is bounded by the frame before it allocates.
        if n > bytes.len() {
            return Err(FrameError::Truncated { what, need: n, have: bytes.len() });
        }
        decode_delta_keys(bytes, n, scratch, what)?;
        return Ok((table, &scratch[..], c.rest()));
    }
    let bytes = c.take(n.checked_mul(8).ok_or(FrameError::Truncated { what, need: usize::MAX, have: p.len() })?)?;
    let keys = match bytemuck::try_cast_slice(bytes) {
        Ok(keys) => keys,
        Err(_) => {
            scratch.clear();
            scratch.extend(bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap())));
            &scratch[..]
        }
    };
    Ok((table, keys, c.rest()))
}

/// Decodes a Pull payload; returns the table and its keys (in place, or in `scratch`: see
/// [`Payload`]).
pub fn decode_pull<'a>(p: &'a [u8], flags: u16, scratch: &'a mut Vec<u64>) -> Result<(u32, &'a [u64]), FrameError> {
    let (table, keys, rest) = decode_keys(p, flags, scratch, "pull request")?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing { what: "pull request", extra: rest.len() });
    }
    Ok((table, keys))
}

/// Appends a Push payload.
pub fn encode_push(table: u32, keys: &[u64], values: &[f32], flags: u16, out: &mut Vec<u8>) {
    encode_pull(table, keys, flags, out);
    encode_values(values, flags, out);
}

/// A decoded Push payload.
#[derive(Debug)]
pub struct PushView<'a> {
    /// The table pushed to.
    pub table: u32,
    /// Keys and their rows of `dim` floats; `None` when the table is unknown here.
    pub rows: Option<(&'a [u64], &'a [f32])>,
}

/// Decodes a Push payload of rows of `dim(table)` floats. Keys and f32 values are read in place
/// when `p` is 8-byte aligned ([`Payload`]), else decoded into the scratch buffers.
pub fn decode_push<'a>(
    p: &'a [u8],
    flags: u16,
    dim: impl Fn(u32) -> Option<usize>,
    key_scratch: &'a mut Vec<u64>,
    value_scratch: &'a mut Vec<f32>,
) -> Result<PushView<'a>, FrameError> {
    let (table, keys, rest) = decode_keys(p, flags, key_scratch, "push request")?;
    let Some(dim) = dim(table) else { return Ok(PushView { table, rows: None }) };
    let n = keys.len().checked_mul(dim).ok_or(FrameError::Truncated {
        what: "push values",
        need: usize::MAX,
        have: rest.len(),
    })?;
    let need = n.checked_mul(value_bytes(flags));
    match need {
        Some(need) if need < rest.len() => {
            return Err(FrameError::Trailing { what: "push values", extra: rest.len() - need })
        }
        Some(need) if need == rest.len() => {}
        _ => {
            return Err(FrameError::Truncated {
                what: "push values",
                need: n.saturating_mul(value_bytes(flags)),
                have: rest.len(),
            })
        }
    }
    if flags & FLAG_F16 == 0 {
        if let Ok(values) = bytemuck::try_cast_slice(rest) {
            return Ok(PushView { table, rows: Some((keys, values)) });
        }
    }
    value_scratch.clear();
    value_scratch.resize(n, 0.0);
    decode_values(rest, flags, value_scratch, "push values")?;
    Ok(PushView { table, rows: Some((keys, &value_scratch[..])) })
}

/// Decodes a UTF-8 text payload (Error frames).
pub fn decode_text(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_checks_bound_first() {
        let h = encode_header(Kind::Push, FLAG_F16, 77, 1000);
        assert_eq!(
            decode_header(&h, 1 << 20).unwrap(),
            Header { kind: Kind::Push, flags: FLAG_F16, id: 77, len: 1000 }
        );
        assert_eq!(decode_header(&h, 999), Err(FrameError::TooLarge { len: 1000, max: 999 }));
        let mut bad = h;
        bad[4] = 9;
        assert_eq!(decode_header(&bad, 1 << 20), Err(FrameError::Version { got: 9 }));
        bad = h;
        bad[5] = 42;
        assert_eq!(decode_header(&bad, 1 << 20), Err(FrameError::UnknownKind(42)));
        bad = h;
        bad[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode_header(&bad, 1 << 20), Err(FrameError::TooShort(3)));
    }

    #[test]
    fn pull_and_push_round_trip() {
        let keys = [1u64, 5, 1 << 60, u64::MAX];
        let vals = [0.5f32, -1.25, 3.0, 4.5, 6.0, -7.0, 0.25, 8.0];
        for key_flags in [0, FLAG_DELTA_KEYS] {
            let mut p = Payload::default();
            let mut bytes = Vec::new();
            encode_pull(2, &keys, key_flags, &mut bytes);
            p.resize(bytes.len()).copy_from_slice(&bytes);
            let mut scratch = Vec::new();
            let (table, got) = decode_pull(p.bytes(), key_flags, &mut scratch).unwrap();
            assert_eq!((table, got), (2, &keys[..]));
            for flags in [key_flags, key_flags | FLAG_F16] {
                bytes.clear();
                encode_push(1, &keys, &vals, flags, &mut bytes);
                // Aligned, as the transports receive it, and not: the same rows either way.
                for at in [0, 1] {
                    let mut buf = Payload::default();
                    buf.resize(bytes.len() + at)[at..].copy_from_slice(&bytes);
                    let (mut ks, mut vs) = (Vec::new(), Vec::new());
                    let v = decode_push(&buf.bytes()[at..], flags, |_| Some(2), &mut ks, &mut vs).unwrap();
                    assert_eq!(v.table, 1);
                    assert_eq!(v.rows, Some((&keys[..], &vals[..])), "values are exact in f16 too");
                }
            }
        }
    }

    #[test]
    fn plain_keys_are_read_in_place_from_an_aligned_payload() {
        let mut bytes = Vec::new();
        encode_push(0, &[3, 4], &[1.0, 2.0], 0, &mut bytes);
        let mut p = Payload::default();
        p.resize(bytes.len()).copy_from_slice(&bytes);
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        let rows = decode_push(p.bytes(), 0, |_| Some(1), &mut ks, &mut vs).unwrap().rows.unwrap();
        assert_eq!(rows, (&[3u64, 4][..], &[1.0f32, 2.0][..]));
        assert!(ks.is_empty() && vs.is_empty(), "nothing was copied");
    }

    #[test]
    fn delta_keys_are_compact_and_refuse_every_second_encoding() {
        let keys: Vec<u64> = (0..1000u64).map(|i| i * 300 + 7).collect();
        let mut p = Vec::new();
        encode_pull(0, &keys, FLAG_DELTA_KEYS, &mut p);
        // Distances of 300 take two bytes each instead of eight.
        assert_eq!(p.len(), 12 + 1 + 999 * 2);
        let mut scratch = Vec::new();
        let framed = |body: &[u8], n: u32| {
            let mut p = Vec::new();
            p.extend_from_slice(&0u32.to_le_bytes());
            p.extend_from_slice(&n.to_le_bytes());
            p.extend_from_slice(&(body.len() as u32).to_le_bytes());
            p.extend_from_slice(body);
            p
        };
        let max = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        // An overlong varint (a redundant zero byte), an overflowing distance, an overflowing key,
        // a count beyond the bytes, and bytes beyond the count.
        let mut over = max.to_vec();
        over[9] = 0x02;
        let mut twice = max.to_vec();
        twice.push(0x01);
        for (body, n) in
            [(&[0x85, 0x00][..], 1), (&over[..], 1), (&twice[..], 2), (&[0x01][..], 2), (&[0x01, 0x01][..], 1)]
        {
            let p = framed(body, n);
            assert!(decode_pull(&p, FLAG_DELTA_KEYS, &mut scratch).is_err(), "{body:?} for {n} keys");
        }
        let p = framed(&max, 1);
        assert_eq!(decode_pull(&p, FLAG_DELTA_KEYS, &mut scratch).unwrap().1, &[u64::MAX]);
    }

    #[test]
    fn truncated_and_trailing_payloads_are_refused() {
        let mut p = Vec::new();
        encode_pull(0, &[1, 2, 3], 0, &mut p);
        let mut keys = Vec::new();
        assert!(matches!(decode_pull(&p[..p.len() - 1], 0, &mut keys), Err(FrameError::Truncated { .. })));
        p.push(0);
        assert!(matches!(decode_pull(&p, 0, &mut keys), Err(FrameError::Trailing { .. })));
        // A key count that would overflow is a truncation, not an allocation.
        let mut huge = Vec::new();
        huge.extend_from_slice(&0u32.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_pull(&huge, 0, &mut keys), Err(FrameError::Truncated { .. })));
        let mut v = Vec::new();
        assert!(matches!(
            decode_push(&huge, 0, |_| Some(1_000_000), &mut keys, &mut v),
            Err(FrameError::Truncated { .. })
        ));
        // So is a delta-encoded count beyond its bytes.
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.push(1);
        assert!(matches!(decode_pull(&huge, FLAG_DELTA_KEYS, &mut keys), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn hello_checks_token() {
        let h = Hello { token: b"secret".to_vec(), role: "worker 0".into() };
        let mut p = Vec::new();
        h.encode(&mut p);
        let d = Hello::decode(&p).unwrap();
        assert_eq!(d, h);
        assert!(d.check(b"secret").is_ok());
        assert_eq!(d.check(b"secreT"), Err(FrameError::BadToken));
        assert_eq!(d.check(b""), Err(FrameError::BadToken));
    }

    #[test]
    fn read_frame_reads_exactly_one() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, Kind::Error, 0, 3, b"nope");
        write_frame(&mut bytes, Kind::Ack, 0, 4, b"");
        let mut r = &bytes[..];
        let mut p = Vec::new();
        let h = read_frame(&mut r, 100, &mut p).unwrap();
        assert_eq!((h.kind, h.id, decode_text(&p).as_str()), (Kind::Error, 3, "nope"));
        assert_eq!(read_frame(&mut r, 100, &mut p).unwrap().kind, Kind::Ack);
        assert!(matches!(read_frame(&mut r, 100, &mut p), Err(ReadError::Io(_))));
    }
}

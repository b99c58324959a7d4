//! The worker half of the TCP transport: one blocking connection per server.
//!
//! A pull or push splits its keys by owner, writes every server's request first and only then
//! reads the replies, so the servers work in parallel. This cannot deadlock: a server reads a
//! whole request before it answers, so every write completes while earlier replies wait unread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::client::ClientStats;
use crate::error::PsError;
use crate::frame::{self, FrameError, Header, Hello, Kind, DEFAULT_MAX_FRAME, FLAG_DELTA_KEYS, FLAG_F16, HEADER_LEN};
use crate::shard::{ShardMap, Split};
use crate::table::TableSpec;
use crate::tls::{Stream, Tls};

/// How a [`TcpClient`] talks to the servers.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Send gradients and receive weights as f16: half the value bytes, about 3 significant digits.
    pub f16: bool,
    /// Bound on a reply's payload, checked before anything is allocated for it.
    pub max_frame: usize,
    /// Longest wait for each connection to open.
    pub connect_timeout: Duration,
    /// Longest wait for any single read or write; `None` waits forever (a slow server is not dead).
    pub io_timeout: Option<Duration>,
    /// TLS to every server, when the job has it.
    pub tls: Option<Tls>,
    /// Send keys delta-encoded ([`frame::FLAG_DELTA_KEYS`]): about 2-3 bytes a key instead of 8
    /// when keys are folded to 24 bits or fewer, up to 10 for full 64-bit hashes.
    pub delta_keys: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            f16: false,
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(10),
            io_timeout: None,
            tls: None,
            delta_keys: false,
        }
    }
}

/// One server connection.
struct Conn {
    stream: Stream,
    /// `"server 3 (host:port)"`, for errors.
    peer: String,
    /// Why the connection is unusable, once a failure has left it out of step with the server.
    broken: Option<(io::ErrorKind, String)>,
}

impl Conn {
    /// The error for this connection's failure `e`; marks it unusable, since a frame may be half-read.
    fn fail(&mut self, e: io::Error) -> PsError {
        self.broken = Some((e.kind(), e.to_string()));
        PsError::Disconnected { peer: self.peer.clone(), source: e }
    }

    /// The error of a connection that failed earlier.
    fn check(&self) -> Result<(), PsError> {
        match &self.broken {
            None => Ok(()),
            Some((kind, msg)) => Err(PsError::Disconnected {
                peer: self.peer.clone(),
                source: io::Error::new(*kind, format!("{msg} (the connection failed earlier)")),
            }),
        }
    }

    /// Reads a reply header and checks it answers request `id`.
    fn read_header(&mut self, max: usize, id: u32) -> Result<Header, PsError> {
        let mut h = [0u8; HEADER_LEN];
        if let Err(e) = self.stream.read_exact(&mut h) {
            return Err(self.fail(e));
        }
        let header = frame::decode_header(&h, max).map_err(|e| self.fail(invalid(e)))?;
        if header.id != id {
            let e = format!("reply {} to request {id}: the connection is out of step", header.id);
            return Err(self.fail(invalid(e)));
        }
        Ok(header)
    }

    /// Reads a payload of `len` bytes into `buf`.
    fn read_payload(&mut self, len: usize, buf: &mut Vec<u8>) -> Result<(), PsError> {
        buf.clear();
        buf.resize(len, 0);
        self.stream.read_exact(buf).map_err(|e| self.fail(e))
    }

    /// Reads the payload of an Error reply into the error it reports.
    fn remote_error(&mut self, len: usize, buf: &mut Vec<u8>) -> PsError {
        match self.read_payload(len, buf) {
            Ok(()) => PsError::Remote { peer: self.peer.clone(), message: frame::decode_text(buf) },
            Err(e) => e,
        }
    }

    /// A reply of a kind that does not answer the request: the server speaks another protocol.
    fn unexpected(&mut self, got: Kind, expected: &'static str) -> PsError {
        self.fail(invalid(FrameError::Unexpected { got, expected }))
    }
}

/// An I/O error for a reply that breaks the protocol.
fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// A pull whose requests are written and whose replies are not yet read.
struct Pending {
    id: u32,
    table: u32,
    dim: usize,
    keys: usize,
    /// Servers written to, whose replies are due.
    sent: Vec<usize>,
    /// The first write failure.
    error: Option<PsError>,
}

/// Pull and push over TCP, with the same signatures as [`crate::ParamClient`]'s.
pub struct TcpClient {
    conns: Vec<Conn>,
    map: ShardMap,
    tables: Vec<TableSpec>,
    /// [`FLAG_F16`] and [`FLAG_DELTA_KEYS`] as the options ask.
    flags: u16,
    max_frame: usize,
    next_id: u32,
    /// The keys of the push being sent, by server.
    split: Split,
    /// Servers a push was written to, whose replies are due.
    sent: Vec<usize>,
    /// The keys of the pull in flight, by server; apart from `split` so a push can be prepared
    /// while a pull is in flight.
    pull_split: Split,
    /// The pull whose replies are due, between `pull_start` and `pull_finish`.
    pending: Option<Pending>,
    /// A request frame, reused: one write per request.
    out: Vec<u8>,
    /// A reply payload, reused.
    input: Vec<u8>,
    stats: ClientStats,
}

impl TcpClient {
    /// Connects to server `i` at `addrs[i]` for every server of `map`, and authenticates.
    pub fn connect(
        addrs: &[String],
        map: ShardMap,
        tables: Vec<TableSpec>,
        token: &[u8],
        role: &str,
        opts: ClientOptions,
    ) -> Result<TcpClient, PsError> {
        if addrs.len() != map.servers() {
            let msg = format!("{} server addresses for a shard map of {} servers", addrs.len(), map.servers());
            return Err(PsError::io("connecting to the servers", io::Error::new(io::ErrorKind::InvalidInput, msg)));
        }
        let mut payload = Vec::new();
        Hello { token: token.to_vec(), role: role.to_string() }.encode(&mut payload);
        let mut client = TcpClient {
            conns: Vec::with_capacity(addrs.len()),
            map,
            tables,
            flags: if opts.f16 { FLAG_F16 } else { 0 } | if opts.delta_keys { FLAG_DELTA_KEYS } else { 0 },
            max_frame: opts.max_frame,
            next_id: 1,
            split: Split::default(),
            sent: Vec::new(),
            pull_split: Split::default(),
            pending: None,
            out: Vec::new(),
            input: Vec::new(),
            stats: ClientStats::default(),
        };
        for (i, addr) in addrs.iter().enumerate() {
            let peer = format!("server {i} ({addr})");
            let stream = open(addr, &opts).map_err(|e| PsError::io(format!("cannot connect to {peer}"), e))?;
            let mut conn = Conn { stream, peer, broken: None };
            client.out.clear();
            frame::write_frame(&mut client.out, Kind::Hello, 0, 0, &payload);
            conn.stream.write_all(&client.out).map_err(|e| conn.fail(e))?;
            let h = conn.read_header(client.max_frame, 0)?;
            match h.kind {
                Kind::Ack if h.len == 0 => {}
                Kind::Error => return Err(conn.remote_error(h.len, &mut client.input)),
                got => return Err(conn.unexpected(got, "Ack to Hello")),
            }
            client.conns.push(conn);
        }
        Ok(client)
    }

    /// The job's tables, indexed by table id.
    pub fn tables(&self) -> &[TableSpec] {
        &self.tables
    }

    /// Traffic so far (clock fields stay zero: clocks are the coordinator's).
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Mutable traffic figures, so a wrapper that adds clocks can count its steps in the same place.
    pub fn stats_mut(&mut self) -> &mut ClientStats {
        &mut self.stats
    }

    /// Current weights of `keys` (sorted, unique) of `table` into `out` (`keys.len() * dim`).
    pub fn pull(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        self.pull_start(table, keys)?;
        self.pull_finish(table, keys, out)
    }

    /// Writes the pull requests for `keys` of `table` and returns without reading the replies,
    /// so the caller can compute while the servers answer; [`TcpClient::pull_finish`] collects
    /// them and must come next.
    pub fn pull_start(&mut self, table: u32, keys: &[u64]) -> Result<(), PsError> {
        if self.pending.is_some() {
            return Err(PsError::Protocol("a pull was started while another was in flight".into()));
        }
        let dim = self.dim(table)?;
        check_sorted(keys)?;
        self.pull_split.fill(&self.map, keys);
        check_conns(&self.conns, &self.pull_split)?;
        let id = self.next_id();
        let mut pending = Pending { id, table, dim, keys: keys.len(), sent: Vec::new(), error: None };
        for s in 0..self.conns.len() {
            let ks = &self.pull_split.keys[s];
            if ks.is_empty() {
                continue;
            }
            self.out.clear();
            let at = begin_frame(&mut self.out);
            frame::encode_pull(table, ks, self.flags, &mut self.out);
            end_frame(&mut self.out, at, Kind::Pull, self.flags, id);
            if write_to(&mut self.conns[s], &self.out, &mut pending.error) {
                pending.sent.push(s);
            }
        }
        self.pending = Some(pending);
        Ok(())
    }

    /// Reads the replies of the pull [`TcpClient::pull_start`] sent for the same `table` and
    /// `keys`, into `out` (`keys.len() * dim`).
    pub fn pull_finish(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        let Some(p) = self.pending.take() else {
            return Err(PsError::Protocol("pull_finish without a pull in flight".into()));
        };
        let refused = if p.table != table || p.keys != keys.len() {
            let (n, t) = (keys.len(), p.table);
            Some(PsError::Protocol(format!(
                "pull_finish for {n} keys of table {table}; the pull in flight is {} keys of table {t}",
                p.keys
            )))
        } else if out.len() != keys.len() * p.dim {
            Some(PsError::LengthMismatch { keys: keys.len(), values: out.len(), dim: p.dim })
        } else {
            None
        };
        if let Some(e) = refused {
            // The pull stays in flight, so its replies can still be collected.
            self.pending = Some(p);
            return Err(e);
        }
        let Pending { id, dim, sent, error, .. } = p;
        let mut first_err = error;
        let vb = frame::value_bytes(self.flags);
        for &s in &sent {
            let conn = &mut self.conns[s];
            let pos = &self.pull_split.pos[s];
            let result = conn.read_header(self.max_frame, id).and_then(|h| match h.kind {
                Kind::Values if h.len == pos.len() * dim * vb => {
                    read_values(conn, h.len, self.flags, dim, pos, keys.len(), out, &mut self.input)
                }
                Kind::Values => {
                    let e = format!("{} value bytes for {} keys of dim {dim}", h.len, pos.len());
                    Err(conn.fail(invalid(e)))
                }
                Kind::Error => Err(conn.remote_error(h.len, &mut self.input)),
                got => Err(conn.unexpected(got, "Values")),
            });
            // Every due reply is read even after a failure, so the other connections stay in step.
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        self.stats.count_pull(keys.len(), out.len(), vb);
        Ok(())
    }

    /// Sends gradients `grads` (`keys.len() * dim`) of `keys` (sorted, unique) of `table`; returns
    /// once every server has applied its share.
    pub fn push(&mut self, table: u32, keys: &[u64], grads: &[f32]) -> Result<(), PsError> {
        if self.pending.is_some() {
            return Err(PsError::Protocol("a push was sent while a pull was in flight".into()));
        }
        let dim = self.dim(table)?;
        if grads.len() != keys.len() * dim {
            return Err(PsError::LengthMismatch { keys: keys.len(), values: grads.len(), dim });
        }
        check_sorted(keys)?;
        self.split.fill(&self.map, keys);
        check_conns(&self.conns, &self.split)?;
        self.sent.clear();
        let id = self.next_id();
        let vb = frame::value_bytes(self.flags);
        let mut first_err = None;
        // A synchronous table's rounds count one push per worker and server, empty or not.
        let sync = self.tables[table as usize].sync;
        for s in 0..self.conns.len() {
            let (ks, pos) = (&self.split.keys[s], &self.split.pos[s]);
            if ks.is_empty() && !sync {
                continue;
            }
            self.out.clear();
            let at = begin_frame(&mut self.out);
            frame::encode_pull(table, ks, self.flags, &mut self.out);
            if pos.len() == keys.len() {
                // This server holds every key, in order: its values are `grads` as they are.
                frame::encode_values(grads, self.flags, &mut self.out);
            } else {
                for &p in pos {
                    let p = p as usize;
                    frame::encode_values(&grads[p * dim..(p + 1) * dim], self.flags, &mut self.out);
                }
            }
            end_frame(&mut self.out, at, Kind::Push, self.flags, id);
            if write_to(&mut self.conns[s], &self.out, &mut first_err) {
                self.sent.push(s);
            }
        }
        for &s in &self.sent {
            let conn = &mut self.conns[s];
            let result = conn.read_header(self.max_frame, id).and_then(|h| match h.kind {
                Kind::Ack if h.len == 0 => Ok(()),
                Kind::Error => Err(conn.remote_error(h.len, &mut self.input)),
                got => Err(conn.unexpected(got, "Ack")),
            });
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        self.stats.count_push(keys.len(), grads.len(), vb);
        Ok(())
    }

    /// The dim of `table`.
    fn dim(&self, table: u32) -> Result<usize, PsError> {
        let tables = self.tables.len();
        Ok(self.tables.get(table as usize).ok_or(PsError::UnknownTable { table, tables })?.dim)
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        // Id 0 is the Hello's; requests wrap around past it.
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }
}

/// Checked on the client too, so a bad batch is the caller's error and not some server's.
fn check_sorted(keys: &[u64]) -> Result<(), PsError> {
    match keys.windows(2).position(|w| w[0] >= w[1]) {
        Some(i) => Err(PsError::UnsortedKeys { index: i + 1, key: keys[i + 1], prev: keys[i] }),
        None => Ok(()),
    }
}

/// The error of a connection that failed earlier, if `split` sends it any keys.
fn check_conns(conns: &[Conn], split: &Split) -> Result<(), PsError> {
    for (conn, ks) in conns.iter().zip(&split.keys) {
        if !ks.is_empty() {
            conn.check()?;
        }
    }
    Ok(())
}

/// Writes the request `out` to `conn`; true when written. A failure is kept in `first_err` rather
/// than returned, so the replies of servers already written to are still read.
fn write_to(conn: &mut Conn, out: &[u8], first_err: &mut Option<PsError>) -> bool {
    match conn.stream.write_all(out) {
        Ok(()) => true,
        Err(e) => {
            first_err.get_or_insert(conn.fail(e));
            false
        }
    }
}

/// Reserves a frame header at the end of `out`; returns where, for [`end_frame`].
fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    at
}

/// Writes the header of the frame begun at `at`, whose payload is everything after it.
fn end_frame(out: &mut [u8], at: usize, kind: Kind, flags: u16, id: u32) {
    let len = out.len() - at - HEADER_LEN;
    out[at..at + HEADER_LEN].copy_from_slice(&frame::encode_header(kind, flags, id, len));
}

/// Reads a Values payload of `len` bytes and scatters its rows into `out` by the split positions.
#[allow(clippy::too_many_arguments)]
fn read_values(
    conn: &mut Conn,
    len: usize,
    flags: u16,
    dim: usize,
    pos: &[u32],
    total: usize,
    out: &mut [f32],
    buf: &mut Vec<u8>,
) -> Result<(), PsError> {
    if flags & FLAG_F16 == 0 && pos.len() == total {
        // This server holds every key, in order: its reply is `out` byte for byte.
        return conn.stream.read_exact(bytemuck::cast_slice_mut(out)).map_err(|e| conn.fail(e));
    }
    conn.read_payload(len, buf)?;
    let row_bytes = dim * frame::value_bytes(flags);
    for (&p, row) in pos.iter().zip(buf.chunks_exact(row_bytes)) {
        let w = &mut out[p as usize * dim..(p as usize + 1) * dim];
        // The length was checked against the rows, so this cannot fail.
        frame::decode_values(row, flags, w, "pulled values").map_err(|e| conn.fail(invalid(e)))?;
    }
    Ok(())
}

/// Opens a connection to `addr` (any of its resolved addresses) with `opts`' timeouts.
fn open(addr: &str, opts: &ClientOptions) -> io::Result<Stream> {
    let mut last = None;
    let resolved: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    for a in resolved {
        match TcpStream::connect_timeout(&a, opts.connect_timeout) {
            Ok(s) => {
                // Requests and replies are whole frames written at once: waiting to coalesce them
                // only adds latency.
                s.set_nodelay(true)?;
                s.set_read_timeout(opts.io_timeout)?;
                s.set_write_timeout(opts.io_timeout)?;
                return Stream::client(s, opts.tls.as_ref(), addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing")))
}

//! The server half of the TCP transport: a tokio runtime of its own that accepts connections and
//! answers each one's frames by calling [`Server::pull`] and [`Server::push`].

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::error::PsError;
use crate::frame::{self, FrameError, Header, Hello, Kind, Payload, PushView, DEFAULT_MAX_FRAME, FLAG_F16, HEADER_LEN};
use crate::server::Server;
use crate::tls::{self, Tls};

/// How a server's TCP endpoint behaves.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Shared secret every connection must present in its Hello.
    pub token: Vec<u8>,
    /// Bound on a request's payload, checked before anything is allocated for it.
    pub max_frame: usize,
    /// Runtime worker threads (at least one is used).
    pub threads: usize,
    /// TLS on every connection, when the job has it: plain TCP is then refused.
    pub tls: Option<Tls>,
}

impl ServeConfig {
    /// A config accepting `token`, with the default frame bound and two threads, without TLS.
    pub fn new(token: impl Into<Vec<u8>>) -> Self {
        ServeConfig { token: token.into(), max_frame: DEFAULT_MAX_FRAME, threads: 2, tls: None }
    }
}

/// How long a new connection has to finish its TLS handshake and send its Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at most that have not authenticated yet; more are closed at once, so a flood of
/// idle connections costs a bounded amount of memory.
pub const MAX_UNAUTHENTICATED: usize = 256;

/// A running TCP endpoint of one server; dropping it stops the endpoint like [`Self::shutdown`].
pub struct TcpServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServerHandle {
    /// Address the endpoint listens on (useful after binding port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every open connection and returns once the runtime is gone.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            // An Err means the accept loop already ended; joining below is all that is left.
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                // A log line must not panic in turn when stderr is gone.
                let _ = writeln!(std::io::stderr(), "server endpoint {}: its accept thread panicked", self.addr);
            }
        }
    }
}

impl Drop for TcpServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `server` on `listener` from a runtime of `cfg.threads` threads; returns at once.
pub fn serve(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    cfg: ServeConfig,
) -> Result<TcpServerHandle, PsError> {
    let id = server.id();
    let ctx = |what: &str| format!("server {id}: {what}");
    let addr = listener.local_addr().map_err(|e| PsError::io(ctx("reading the listener's address"), e))?;
    listener.set_nonblocking(true).map_err(|e| PsError::io(ctx("making the listener non-blocking"), e))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.max(1))
        .thread_name(format!("ps-server-{id}"))
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| PsError::io(ctx("starting its runtime"), e))?;
    let listener = {
        let _in_runtime = rt.enter();
        TcpListener::from_std(listener).map_err(|e| PsError::io(ctx(&format!("listening on {addr}")), e))?
    };
    let (tx, rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("ps-server-{id}-accept"))
        .spawn(move || {
            rt.block_on(accept(listener, server, Arc::new(cfg), rx));
            // Dropping the runtime drops every connection task and so closes its socket: clients
            // of a stopped server see it gone instead of waiting forever.
            drop(rt);
        })
        .map_err(|e| PsError::io(ctx("starting its accept thread"), e))?;
    Ok(TcpServerHandle { addr, stop: Some(tx), thread: Some(thread) })
}

/// Accepts connections until `stop` fires or its sender is dropped.
async fn accept(listener: TcpListener, server: Arc<Server>, cfg: Arc<ServeConfig>, mut stop: oneshot::Receiver<()>) {
    let waiting = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if waiting.load(Ordering::Relaxed) >= MAX_UNAUTHENTICATED {
                        let _ = writeln!(
                            std::io::stderr(),
                            "server {}: refused a connection from {peer}: {MAX_UNAUTHENTICATED} connections are already waiting to authenticate",
                            server.id()
                        );
                        continue;
                    }
                    waiting.fetch_add(1, Ordering::Relaxed);
                    let pending = Pending(Arc::clone(&waiting));
                    tokio::spawn(connection(stream, peer, Arc::clone(&server), Arc::clone(&cfg), pending));
                }
                Err(e) => {
                    // Out of descriptors and the like: keep serving the open connections, and
                    // pause so a persistent failure does not spin.
                    let _ = writeln!(std::io::stderr(), "server {}: accepting a connection failed: {e}", server.id());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Why a connection ended before its peer closed it.
#[derive(Debug, thiserror::Error)]
enum Close {
    /// The peer broke the protocol; it is told why before the connection closes.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("truncated frame: the connection ended inside {0}")]
    Truncated(String),
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Maps end-of-stream inside a frame to [`Close::Truncated`].
fn eof_inside(e: std::io::Error, what: impl FnOnce() -> String) -> Close {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Close::Truncated(what())
    } else {
        Close::Io(e)
    }
}

/// Counts a connection among those not yet authenticated until dropped.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection (TLS first when the job has it) and logs why it ended, if badly.
async fn connection(stream: TcpStream, peer: SocketAddr, server: Arc<Server>, cfg: Arc<ServeConfig>, pending: Pending) {
    let id = server.id();
    // Requests and replies are whole frames written at once: waiting to coalesce them only adds latency.
    let _ = stream.set_nodelay(true);
    let Some(tls) = &cfg.tls else { return serve_stream(stream, peer, &server, &cfg, pending).await };
    let refused = |why: &str| {
        let _ = writeln!(std::io::stderr(), "server {id}: refused the connection from {peer}: {why}");
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(HELLO_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if tls::starts_tls(first[0]) => {}
        Ok(Ok(1)) => {
            // A plain-TCP peer: tell it in the clear why it is refused.
            let mut out = Vec::new();
            frame::write_frame(&mut out, Kind::Error, 0, 0, tls::TLS_ONLY.as_bytes());
            let mut stream = stream;
            let _ = stream.write_all(&out).await;
            return refused("it spoke plain TCP to a TLS endpoint");
        }
        Ok(_) => return,
        Err(_) => return refused(&format!("no TLS handshake within {} s", HELLO_TIMEOUT.as_secs())),
    }
    match tokio::time::timeout(HELLO_TIMEOUT, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => serve_stream(stream, peer, &server, &cfg, pending).await,
        Ok(Err(e)) => refused(&format!("TLS handshake failed: {e}")),
        Err(_) => refused(&format!("no TLS handshake within {} s", HELLO_TIMEOUT.as_secs())),
    }
}

async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    server: &Server,
    cfg: &ServeConfig,
    pending: Pending,
) {
    let mut conn = Conn {
        stream,
        pending: Some(pending),
        server,
        cfg,
        id: 0,
        role: String::new(),
        payload: Payload::default(),
        keys: Vec::new(),
        values: Vec::new(),
        reply: Payload::default(),
    };
    let Err(reason) = conn.run().await else { return };
    if !matches!(reason, Close::Io(_)) {
        // Best effort: the peer may be gone already, and the connection closes either way.
        let _ = conn.send_error(conn.id, &reason.to_string()).await;
        let _ = conn.stream.shutdown().await;
    }
    // The role is the peer's own text: escape it so it cannot forge log lines.
    let role: String = conn.role.chars().take(64).flat_map(char::escape_debug).collect();
    let role = if role.is_empty() { String::new() } else { format!(" ({role})") };
    let _ = writeln!(std::io::stderr(), "server {}: closed the connection from {peer}{role}: {reason}", server.id());
}

/// One connection's state: buffers reused across its requests.
struct Conn<'a, S> {
    stream: S,
    /// Held until the peer has authenticated.
    pending: Option<Pending>,
    server: &'a Server,
    cfg: &'a ServeConfig,
    /// Id of the frame being served, echoed by its reply.
    id: u32,
    /// Who the peer said it is.
    role: String,
    /// The request's payload, aligned so its keys and values are read in place.
    payload: Payload,
    keys: Vec<u64>,
    values: Vec<f32>,
    /// A whole reply frame, so each reply is one write; aligned, so a pull's f32 values are
    /// written into it directly.
    reply: Payload,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<'_, S> {
    /// Authenticates the peer, then answers requests until it closes.
    async fn run(&mut self) -> Result<(), Close> {
        // Until the peer has authenticated, a frame may be no larger than the largest Hello, so a
        // stranger cannot make the server allocate up to `max_frame`; nor may it wait forever.
        let hello = tokio::time::timeout(HELLO_TIMEOUT, self.read_frame(frame::MAX_HELLO.min(self.cfg.max_frame)));
        let Ok(hello) = hello.await else {
            let s = HELLO_TIMEOUT.as_secs();
            return Err(Close::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no Hello within {s} s"))));
        };
        let Some(h) = hello? else { return Ok(()) };
        if h.kind != Kind::Hello {
            return Err(FrameError::Unexpected { got: h.kind, expected: "Hello (authenticate first)" }.into());
        }
        let hello = Hello::decode(self.payload.bytes())?;
        self.role = hello.role.clone();
        hello.check(&self.cfg.token)?;
        self.pending = None;
        self.send_empty(Kind::Ack, h.id).await?;
        while let Some(h) = self.read_frame(self.cfg.max_frame).await? {
            match h.kind {
                Kind::Pull => self.pull(h).await?,
                Kind::Push => self.push(h).await?,
                got => return Err(FrameError::Unexpected { got, expected: "Pull or Push" }.into()),
            }
        }
        Ok(())
    }

    /// Reads one frame of at most `max` payload bytes into `payload`; `None` when the peer closed
    /// between frames.
    async fn read_frame(&mut self, max: usize) -> Result<Option<Header>, Close> {
        self.id = 0;
        let mut h = [0u8; HEADER_LEN];
        // A peer that closes before a frame's first byte is done, not truncated (over TLS, also
        // one that closes without saying goodbye).
        let n = match self.stream.read(&mut h).await {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            r => r?,
        };
        if n == 0 {
            return Ok(None);
        }
        self.stream.read_exact(&mut h[n..]).await.map_err(|e| eof_inside(e, || "a frame header".into()))?;
        let header = frame::decode_header(&h, max)?;
        self.id = header.id;
        let len = header.len;
        self.stream
            .read_exact(self.payload.resize(len))
            .await
            .map_err(|e| eof_inside(e, || format!("a {len}-byte payload")))?;
        Ok(Some(header))
    }

    /// Answers a Pull with the rows' weights, encoded as the request asks.
    async fn pull(&mut self, h: Header) -> Result<(), Close> {
        let (table, keys) = frame::decode_pull(self.payload.bytes(), h.flags, &mut self.keys)?;
        let dim = match self.server.table(table) {
            Ok(store) => store.spec().dim,
            Err(e) => return self.send_error(h.id, &e.to_string()).await,
        };
        let flags = h.flags & FLAG_F16;
        let n = keys.len() * dim;
        let len = n * frame::value_bytes(flags);
        if len > self.cfg.max_frame {
            let (k, max) = (keys.len(), self.cfg.max_frame);
            let e = format!(
                "a pull of {k} keys of dim {dim} needs a {len}-byte reply, over the frame limit of {max} bytes"
            );
            return self.send_error(h.id, &e).await;
        }
        let values = self.reply.frame(Kind::Values, flags, h.id, len);
        let pulled = if flags & FLAG_F16 == 0 {
            // The values go straight into the reply, whose payload is 4-byte aligned.
            self.server.pull(table, keys, bytemuck::cast_slice_mut(values))
        } else {
            self.values.resize(n, 0.0);
            let pulled = self.server.pull(table, keys, &mut self.values);
            frame::encode_values_into(&self.values, flags, values);
            pulled
        };
        match pulled {
            Ok(()) => self.send().await,
            Err(e) => self.send_error(h.id, &e.to_string()).await,
        }
    }

    /// Applies a Push and acknowledges it.
    async fn push(&mut self, h: Header) -> Result<(), Close> {
        let server = self.server;
        let dim = |t: u32| server.table(t).ok().map(|s| s.spec().dim);
        let result = match frame::decode_push(self.payload.bytes(), h.flags, dim, &mut self.keys, &mut self.values)? {
            PushView { table, rows: Some((keys, grads)) } => server.push(table, keys, grads),
            PushView { table, rows: None } => Err(PsError::UnknownTable { table, tables: server.tables().len() }),
        };
        match result {
            Ok(ticket) => {
                // A synchronous push is acknowledged once its round is applied: that is the
                // barrier the worker's next pull relies on.
                if let Some(ticket) = ticket {
                    server.wait_async(ticket).await;
                }
                self.send_empty(Kind::Ack, h.id).await
            }
            Err(e) => self.send_error(h.id, &e.to_string()).await,
        }
    }

    async fn send_empty(&mut self, kind: Kind, id: u32) -> Result<(), Close> {
        self.reply.frame(kind, 0, id, 0);
        self.send().await
    }

    async fn send_error(&mut self, id: u32, message: &str) -> Result<(), Close> {
        self.reply.frame(Kind::Error, 0, id, message.len()).copy_from_slice(message.as_bytes());
        self.send().await
    }

    async fn send(&mut self) -> Result<(), Close> {
        self.stream.write_all(self.reply.bytes()).await?;
        Ok(())
    }
}

//! A server's or worker's connection to the coordinator: authenticated, with heartbeats.

use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starling_ps::control::{self, FromCoordinator, ToCoordinator};
use starling_ps::frame::{self, Hello, Kind};
use starling_ps::tls::{Stream, Tls};
use starling_ps::PsError;

/// How long a process keeps retrying to reach a coordinator that is not up yet.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// The control connection to the coordinator.
pub struct CoordLink {
    reader: Stream,
    writer: Arc<Mutex<Stream>>,
    buf: Vec<u8>,
    peer: String,
}

impl CoordLink {
    /// Connects to `addr` and authenticates as `role`, retrying while no coordinator answers
    /// there (not up yet, or a dead one's socket still closing), up to [`CONNECT_PATIENCE`].
    pub fn connect(addr: &str, token: &[u8], role: &str, tls: Option<&Tls>) -> Result<Self, PsError> {
        let deadline = Instant::now() + CONNECT_PATIENCE;
        loop {
            match Self::try_connect(addr, token, role, tls) {
                Err(PsError::Disconnected { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn try_connect(addr: &str, token: &[u8], role: &str, tls: Option<&Tls>) -> Result<Self, PsError> {
        let peer = format!("coordinator ({addr})");
        let sock = TcpStream::connect(addr).map_err(|source| PsError::Disconnected { peer: peer.clone(), source })?;
        sock.set_nodelay(true).map_err(|e| PsError::io("setting TCP_NODELAY", e))?;
        let mut stream = match Stream::client(sock, tls, addr) {
            Ok(s) => s,
            // A certificate refused either way is not worth retrying; a connection cut is.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(PsError::io(format!("TLS handshake with the {peer} failed"), e))
            }
            Err(source) => return Err(PsError::Disconnected { peer, source }),
        };
        let mut hello = Vec::new();
        Hello { token: token.to_vec(), role: role.to_string() }.encode(&mut hello);
        let mut out = Vec::new();
        frame::write_frame(&mut out, Kind::Hello, 0, 0, &hello);
        let mut reader = stream.try_clone().map_err(|e| PsError::io("cloning a socket", e))?;
        let disconnected = |source| PsError::Disconnected { peer: peer.clone(), source };
        std::io::Write::write_all(&mut stream, &out).map_err(disconnected)?;
        let mut buf = Vec::new();
        let h = frame::read_frame(&mut reader, control::MAX_CONTROL_FRAME, &mut buf).map_err(|e| match e {
            // Under TLS 1.3 a refused certificate is told after the handshake, as the first
            // read fails: not worth retrying.
            frame::ReadError::Io(source) if tls.is_some() && source.kind() == std::io::ErrorKind::InvalidData => {
                PsError::io(format!("the {peer} refused this process's certificate"), source)
            }
            frame::ReadError::Io(source) => PsError::Disconnected { peer: peer.clone(), source },
            frame::ReadError::Frame(f) => f.into(),
        })?;
        match h.kind {
            Kind::Ack => {}
            Kind::Error => return Err(PsError::Remote { peer, message: frame::decode_text(&buf) }),
            got => return Err(frame::FrameError::Unexpected { got, expected: "Ack to Hello" }.into()),
        }
        Ok(CoordLink { reader, writer: Arc::new(Mutex::new(stream)), buf, peer })
    }

    /// Sends a message (shared with the heartbeat thread, so whole frames never interleave).
    pub fn send(&self, msg: &ToCoordinator) -> Result<(), PsError> {
        send_on(&self.writer, msg).map_err(|source| PsError::Disconnected { peer: self.peer.clone(), source })
    }

    /// Waits for the next message; an `Abort` becomes [`PsError::Aborted`], a closed link names the coordinator.
    pub fn recv(&mut self) -> Result<FromCoordinator, PsError> {
        match control::recv(&mut self.reader, &mut self.buf) {
            Ok(FromCoordinator::Abort { reason }) => Err(PsError::Aborted(reason)),
            Ok(m) => Ok(m),
            Err(frame::ReadError::Io(source)) => Err(PsError::Disconnected { peer: self.peer.clone(), source }),
            Err(frame::ReadError::Frame(f)) => Err(f.into()),
        }
    }

    /// Sends a heartbeat every `every` from a background thread, with `progress()` attached, until
    /// the link fails (the main thread then learns of it on its next receive).
    pub fn start_heartbeats(
        &self,
        every: Duration,
        progress: impl Fn() -> Option<control::WorkerProgress> + Send + 'static,
    ) {
        let writer = Arc::clone(&self.writer);
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            if send_on(&writer, &ToCoordinator::Heartbeat { progress: progress() }).is_err() {
                return;
            }
        });
    }
}

fn send_on(writer: &Mutex<Stream>, msg: &ToCoordinator) -> std::io::Result<()> {
    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
    control::send(&mut *w, msg)
}

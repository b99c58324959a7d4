//! TLS on every connection of a job: each process presents its certificate and checks its
//! peer's against the job's CA (mutual TLS), with rustls on the ring provider. The job's token
//! is still checked inside the encrypted stream, so TLS adds secrecy and identity to it.
//!
//! [`Stream`] is the blocking stream of the control plane and the workers' data plane: plain or
//! TLS, with halves that two threads may use at once (a reader blocked on the socket while a
//! heartbeat is written). The servers' data plane accepts with [`Tls::acceptor`] (tokio).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection};

use crate::error::PsError;

/// The files of a process's TLS identity, PEM-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signs every certificate of the job.
    pub ca: PathBuf,
}

/// A loaded TLS identity: the configs to accept and to open connections with.
#[derive(Clone)]
pub struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

fn bad(path: &Path, message: impl Into<String>) -> PsError {
    PsError::Tls { path: path.to_path_buf(), message: message.into() }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, PsError> {
    std::fs::read(path).map_err(|e| bad(path, format!("cannot read it: {e}")))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PsError> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block)"));
    }
    Ok(certs)
}

impl Tls {
    /// Loads `files`; an error names the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<Tls, PsError> {
        let chain = certs(&files.cert)?;
        let key_pem = read_pem(&files.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad(&files.key, format!("holds no private key (expected a PEM key block): {e}")))?;
        let mut roots = RootCertStore::empty();
        for c in certs(&files.ca)? {
            roots.add(c).map_err(|e| bad(&files.ca, format!("not a usable CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = rustls::DEFAULT_VERSIONS;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|e| bad(&files.ca, format!("cannot verify peers with it: {e}")))?;
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| bad(&files.cert, e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| bad(&files.key, format!("does not go with {}: {e}", files.cert.display())))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| bad(&files.cert, e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(&files.key, format!("does not go with {}: {e}", files.cert.display())))?;
        Ok(Tls { server: Arc::new(server), client: Arc::new(client) })
    }

    /// The acceptor of the servers' (tokio) endpoints.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.server))
    }
}

/// The name a peer at `addr` (`host:port`) must have in its certificate: the host, a DNS name
/// or an IP address.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a host name: {e}")))
}

/// A blocking stream, plain or TLS; [`Stream::try_clone`] gives a second handle to the same
/// connection, so one thread can read while another writes.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Arc<Duplex>),
}

/// One TLS connection shared by a reading and a writing thread: the reader waits for the socket
/// without the lock; the lock is held while bytes move through rustls and onto the socket, so a
/// writer blocked on a full send buffer holds up the reader until the peer reads (control
/// messages are small, and every peer keeps reading).
pub struct Duplex {
    sock: TcpStream,
    conn: Mutex<Connection>,
}

impl Duplex {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the handshake to its end on the blocking socket.
    fn handshake(sock: TcpStream, mut conn: Connection) -> io::Result<Duplex> {
        while conn.is_handshaking() {
            conn.complete_io(&mut &sock)?;
        }
        Ok(Duplex { sock, conn: Mutex::new(conn) })
    }

    fn flush_tls(&self, conn: &mut Connection) -> io::Result<()> {
        while conn.wants_write() {
            conn.write_tls(&mut &self.sock)?;
        }
        Ok(())
    }
}

impl Drop for Duplex {
    fn drop(&mut self) {
        // Say goodbye properly, so the peer sees a clean end rather than a cut connection.
        let mut conn = self.lock();
        conn.send_close_notify();
        let _ = self.flush_tls(&mut conn);
    }
}

/// Whether a connection's first byte starts a TLS handshake (a TLS record of type handshake);
/// a Starling frame never starts so, so a plain peer is told in the clear that TLS is needed.
pub fn starts_tls(first: u8) -> bool {
    first == 0x16
}

/// What a plain-TCP peer of a TLS endpoint is told.
pub const TLS_ONLY: &str =
    "this endpoint speaks TLS only (the job sets cluster.tls_*): connect with the job's certificate";

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Stream {
    /// The client side of a TLS connection over `sock` to `addr`, whose certificate must name
    /// `addr`'s host and be signed by the job's CA.
    pub fn connect_tls(sock: TcpStream, tls: &Tls, addr: &str) -> io::Result<Stream> {
        let conn = ClientConnection::new(Arc::clone(&tls.client), server_name(addr)?).map_err(tls_error)?;
        Ok(Stream::Tls(Arc::new(Duplex::handshake(sock, conn.into())?)))
    }

    /// The server side of a TLS connection over `sock`: the peer must present a certificate
    /// signed by the job's CA. Plain TCP (anything but a TLS hello) fails here.
    pub fn accept_tls(sock: TcpStream, tls: &Tls) -> io::Result<Stream> {
        let conn = ServerConnection::new(Arc::clone(&tls.server)).map_err(tls_error)?;
        Ok(Stream::Tls(Arc::new(Duplex::handshake(sock, conn.into())?)))
    }

    /// Plain when `tls` is `None`, else the client side of TLS to `addr`.
    pub fn client(sock: TcpStream, tls: Option<&Tls>, addr: &str) -> io::Result<Stream> {
        match tls {
            None => Ok(Stream::Plain(sock)),
            Some(t) => Stream::connect_tls(sock, t, addr),
        }
    }

    /// Another handle to the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Plain(s) => s.try_clone().map(Stream::Plain),
            Stream::Tls(d) => Ok(Stream::Tls(Arc::clone(d))),
        }
    }

    /// The TCP socket underneath (for timeouts and shutdown).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(d) => &d.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let d = match self {
            Stream::Plain(s) => return s.read(out),
            Stream::Tls(d) => d,
        };
        loop {
            match d.lock().reader().read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Wait for bytes (or the end) without the lock, so the other handle can write.
            d.sock.peek(&mut [0u8; 1])?;
            let mut conn = d.lock();
            conn.read_tls(&mut &d.sock)?;
            conn.process_new_packets().map_err(tls_error)?;
            d.flush_tls(&mut conn)?;
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(d) => {
                let mut conn = d.lock();
                let n = conn.writer().write(buf)?;
                d.flush_tls(&mut conn)?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(d) => d.flush_tls(&mut d.lock()),
        }
    }
}

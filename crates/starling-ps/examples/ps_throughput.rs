//! Throughput of the TCP transport against raw TCP between the same two processes.
//!
//! `ps_throughput [--time SECS] [--keys N,N..] [--servers N]` spawns itself twice as a child: once as a raw-TCP peer that
//! answers each request of N bytes with M bytes (plain blocking `write_all`/`read_exact` of 4 MiB
//! buffers), and once per server count as a process running starling-ps TCP servers. It then
//! times pulls and pushes of 1k..1M keys of an LR table (dim 1) and an FM k=8 table (dim 9), and
//! the raw exchange of the same byte volumes, and prints a markdown table. The same calls on an
//! in-process cluster (no sockets) show how much of the time is the servers' own work.
//!
//! With `--tls DIR` (`node.pem`, `node.key`, `ca.pem`, as `scripts/dev-certs.sh` makes them) the
//! same servers also listen with TLS, and every call is timed over both.
//!
//! Child modes (internal): `raw-peer` and `servers N [DIR]`.

use std::error::Error;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_core::{ModelSpec, Optimizer};
use starling_ps::frame::DEFAULT_MAX_FRAME;
use starling_ps::{
    serve, ClientOptions, LocalClocks, LocalCluster, ParamClient, ServeConfig, Server, ShardMap, Staleness, TableSpec,
    TcpClient, Tls, TlsFiles,
};

type Res<T> = Result<T, Box<dyn Error>>;

/// Raw transfers use buffers of this size, like a simple bulk copy would.
const CHUNK: usize = 4 << 20;
const TOKEN: &[u8] = b"bench";
const BATCHES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("raw-peer") => raw_peer(),
        Some("servers") => {
            let n = args.get(1).ok_or("servers needs a count")?.parse()?;
            run_servers(n, args.get(2).map(String::as_str))
        }
        _ => {
            let time = match args.iter().position(|a| a == "--time") {
                Some(i) => args.get(i + 1).ok_or("--time needs seconds")?.parse()?,
                None => 0.5,
            };
            let tls = args.iter().position(|a| a == "--tls").map(|i| args.get(i + 1).ok_or("--tls needs a directory"));
            let keys = match args.iter().position(|a| a == "--keys") {
                Some(i) => {
                    let list = args.get(i + 1).ok_or("--keys needs a comma-separated list of batch sizes")?;
                    list.split(',').map(str::parse).collect::<Result<Vec<usize>, _>>()?
                }
                None => BATCHES.to_vec(),
            };
            let servers = match args.iter().position(|a| a == "--servers") {
                Some(i) => vec![args.get(i + 1).ok_or("--servers needs a count")?.parse()?],
                None => vec![1, 2],
            };
            bench(Duration::from_secs_f64(time), tls.transpose()?.map(String::as_str), &keys, &servers)
        }
    }
}

/// The job's tables: LR (dim 1) and FM with k = 8 (dim 9), both AdaGrad.
fn specs() -> Vec<TableSpec> {
    let opt = Optimizer::adagrad_default();
    vec![TableSpec::for_model("lr", &ModelSpec::lr(), &opt), TableSpec::for_model("fm", &ModelSpec::fm(8), &opt)]
}

/// The TLS identity in `dir`.
fn tls_in(dir: &str) -> Res<Tls> {
    let p = |n: &str| std::path::Path::new(dir).join(n);
    Ok(Tls::load(&TlsFiles { cert: p("node.pem"), key: p("node.key"), ca: p("ca.pem") })?)
}

/// Child: `n` servers on loopback ports; prints their addresses (then, with `tls`, those of the
/// same servers' TLS endpoints) and serves until stdin closes.
fn run_servers(n: usize, tls: Option<&str>) -> Res<()> {
    let specs = specs();
    let map = ShardMap::even(n);
    let tls = tls.map(tls_in).transpose()?;
    let (mut handles, mut secure) = (Vec::new(), Vec::new());
    for i in 0..n {
        let server = Arc::new(Server::new(i, &specs, &map.vshards_of(i)));
        let cfg = ServeConfig { token: TOKEN.to_vec(), max_frame: DEFAULT_MAX_FRAME, threads: 1, tls: None };
        handles.push(serve(TcpListener::bind("127.0.0.1:0")?, Arc::clone(&server), cfg.clone())?);
        if let Some(t) = &tls {
            let cfg = ServeConfig { tls: Some(t.clone()), ..cfg };
            secure.push(serve(TcpListener::bind("127.0.0.1:0")?, server, cfg)?);
        }
    }
    let addrs: Vec<String> = handles.iter().map(|h| h.addr().to_string()).collect();
    let secure: Vec<String> = secure.iter().map(|h| h.addr().to_string()).collect();
    println!("{} {}", addrs.join(","), secure.join(","));
    io::stdout().flush()?;
    // The parent closes our stdin when it is done.
    io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}

/// Child: answers each `req:u64 resp:u64` header plus `req` bytes with `resp` bytes.
fn raw_peer() -> Res<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    io::stdout().flush()?;
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; CHUNK];
    let mut h = [0u8; 16];
    loop {
        match s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let req = u64::from_le_bytes(h[..8].try_into()?) as usize;
        let resp = u64::from_le_bytes(h[8..].try_into()?) as usize;
        recv(&mut s, &mut buf, req)?;
        send(&mut s, &buf, resp)?;
    }
}

fn send(s: &mut TcpStream, buf: &[u8], mut n: usize) -> io::Result<()> {
    while n > 0 {
        let c = n.min(buf.len());
        s.write_all(&buf[..c])?;
        n -= c;
    }
    Ok(())
}

fn recv(s: &mut TcpStream, buf: &mut [u8], mut n: usize) -> io::Result<()> {
    while n > 0 {
        let c = n.min(buf.len());
        s.read_exact(&mut buf[..c])?;
        n -= c;
    }
    Ok(())
}

/// A child process of this binary and the first line it printed.
fn spawn(args: &[&str]) -> Res<(Child, String)> {
    let mut child =
        Command::new(std::env::current_exe()?).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("child has no stdout")?).read_line(&mut line)?;
    if line.trim().is_empty() {
        return Err(format!("child {args:?} exited before printing its address").into());
    }
    Ok((child, line.trim().to_string()))
}

/// Closes the child's stdin and waits for it.
fn reap(mut child: Child) -> Res<()> {
    drop(child.stdin.take());
    child.wait()?;
    Ok(())
}

/// Seconds per call of `op`, run until `min` has passed and at least 3 times, after one warm-up.
fn time_op(min: Duration, mut op: impl FnMut() -> Res<()>) -> Res<f64> {
    op()?;
    let start = Instant::now();
    let mut reps = 0u32;
    while reps < 3 || start.elapsed() < min {
        op()?;
        reps += 1;
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(reps))
}

/// One row of the report.
struct Row {
    servers: usize,
    model: &'static str,
    keys: usize,
    op: &'static str,
    secs: f64,
    bytes: usize,
    raw_secs: f64,
    local_secs: f64,
    /// The same call over TLS, when measured.
    tls_secs: Option<f64>,
}

fn bench(min: Duration, tls_dir: Option<&str>, batches: &[usize], server_counts: &[usize]) -> Res<()> {
    let tls = tls_dir.map(tls_in).transpose()?;
    let specs = specs();
    let models = [("LR (dim 1)", 0u32), ("FM k=8 (dim 9)", 1u32)];

    // Raw TCP between the same two kinds of process, measured next to each starling-ps figure.
    let (raw_child, raw_addr) = spawn(&["raw-peer"])?;
    let mut raw = RawLink::connect(&raw_addr)?;

    let mut rows = Vec::new();
    for &servers in server_counts {
        let n_servers = servers.to_string();
        let mut args = vec!["servers", n_servers.as_str()];
        args.extend(tls_dir);
        let (child, line) = spawn(&args)?;
        let (plain, secure) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let addrs: Vec<String> = plain.split(',').map(str::to_string).collect();
        let opts = ClientOptions::default();
        let mut c = TcpClient::connect(&addrs, ShardMap::even(servers), specs.clone(), TOKEN, "bench", opts)?;
        let mut ct = match &tls {
            Some(t) => {
                let addrs: Vec<String> = secure.split(',').map(str::to_string).collect();
                let opts = ClientOptions { tls: Some(t.clone()), ..ClientOptions::default() };
                Some(TcpClient::connect(&addrs, ShardMap::even(servers), specs.clone(), TOKEN, "bench", opts)?)
            }
            None => None,
        };
        let local = LocalCluster::new(specs.clone(), servers, LocalClocks::new(1, Staleness::Unbounded, 0));
        let mut l = local.client(0, 0);
        for &(model, t) in &models {
            let dim = specs[t as usize].dim;
            for &n in batches {
                let keys: Vec<u64> = (0..n as u64).map(|i| i * 7 + 3).collect();
                let mut vals = vec![0f32; n * dim];
                let grads: Vec<f32> = (0..n * dim).map(|i| (i % 17) as f32 * 1e-3 - 8e-3).collect();
                // The first push creates the rows, so pulls read stored rows, as in training.
                c.push(t, &keys, &grads)?;
                l.push(t, &keys, &grads)?;
                let bytes = n * 8 + n * dim * 4;
                let secs = time_op(min, || Ok(c.pull(t, &keys, &mut vals)?))?;
                let local_secs = time_op(min, || Ok(l.pull(t, &keys, &mut vals)?))?;
                // Pull: keys out, values back. Push: keys and values out, a frame header back.
                let raw_secs = time_op(min, || raw.round(n * 8, n * dim * 4))?;
                let tls_secs = match &mut ct {
                    Some(ct) => Some(time_op(min, || Ok(ct.pull(t, &keys, &mut vals)?))?),
                    None => None,
                };
                rows.push(Row { servers, model, keys: n, op: "pull", secs, bytes, raw_secs, local_secs, tls_secs });
                let secs = time_op(min, || Ok(c.push(t, &keys, &grads)?))?;
                let local_secs = time_op(min, || Ok(l.push(t, &keys, &grads)?))?;
                let raw_secs = time_op(min, || raw.round(n * 8 + n * dim * 4, 12))?;
                let tls_secs = match &mut ct {
                    Some(ct) => Some(time_op(min, || Ok(ct.push(t, &keys, &grads)?))?),
                    None => None,
                };
                rows.push(Row { servers, model, keys: n, op: "push", secs, bytes, raw_secs, local_secs, tls_secs });
            }
        }
        drop(c);
        drop(ct);
        reap(child)?;
    }
    drop(raw);
    reap(raw_child)?;
    print_table(&rows);
    Ok(())
}

/// The parent's end of the raw-TCP comparison.
struct RawLink {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawLink {
    fn connect(addr: &str) -> Res<RawLink> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(RawLink { stream, buf: vec![0u8; CHUNK] })
    }

    /// Sends `req` bytes and receives `resp` bytes back.
    fn round(&mut self, req: usize, resp: usize) -> Res<()> {
        self.buf[..8].copy_from_slice(&(req as u64).to_le_bytes());
        self.buf[8..16].copy_from_slice(&(resp as u64).to_le_bytes());
        // The 16-byte header rides in the first chunk, as a frame header does.
        send(&mut self.stream, &self.buf, 16 + req)?;
        recv(&mut self.stream, &mut self.buf, resp)?;
        Ok(())
    }
}

fn print_table(rows: &[Row]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# starling-ps TCP throughput vs raw TCP (loopback, {cores} cores, one client, 1 thread per server)");
    println!();
    println!("MB = 10^6 bytes of keys (8 B) and f32 values (4 B) moved per request, as counted by ClientStats;");
    println!("raw TCP moves the same bytes per request/response between the same two processes;");
    println!("in-process is the same call on a LocalCluster of as many servers (no sockets, no copies).");
    println!();
    println!("TLS: the same servers' TLS endpoints (rustls, ring; mutual certificates), one client.");
    println!();
    println!("| servers | table | keys/batch | op | keys/s | MB/s | raw TCP MB/s | vs raw | in-process keys/s | TLS keys/s | TLS vs plain |");
    println!("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let mbs = r.bytes as f64 / r.secs / 1e6;
        let raw = r.bytes as f64 / r.raw_secs / 1e6;
        let tls = r.tls_secs.map_or("-".to_string(), |s| human(r.keys as f64 / s));
        let vs = r.tls_secs.map_or("-".to_string(), |s| format!("{:.2}", r.secs / s));
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {} | {tls} | {vs} |",
            r.servers,
            r.model,
            r.keys,
            r.op,
            human(r.keys as f64 / r.secs),
            mbs,
            raw,
            mbs / raw,
            human(r.keys as f64 / r.local_secs)
        );
    }
}

/// `12.3 M` style.
fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

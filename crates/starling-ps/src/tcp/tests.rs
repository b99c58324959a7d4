//! Loopback tests of the TCP transport: real sockets, real servers, no sleeps.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use starling_core::{ModelSpec, Optimizer};

use super::*;
use crate::client::{LocalCluster, ParamClient};
use crate::clock::{LocalClocks, Staleness};
use crate::error::PsError;
use crate::frame::{self, Header, Hello, Kind, FLAG_F16};
use crate::server::Server;
use crate::shard::ShardMap;
use crate::table::TableSpec;
use crate::tls::Tls;

const TOKEN: &[u8] = b"s3cret";
const MAX: usize = 1 << 20;

fn specs() -> Vec<TableSpec> {
    let opt = Optimizer::adagrad_default();
    vec![
        TableSpec::for_model("fm", &ModelSpec { seed: 5, ..ModelSpec::fm(4) }, &opt),
        TableSpec::for_model("lr", &ModelSpec::lr(), &opt),
    ]
}

/// `n` servers of `specs` on loopback ports.
fn start(specs: &[TableSpec], n: usize) -> (Vec<TcpServerHandle>, Vec<String>) {
    start_tls(specs, n, None)
}

/// `n` servers of `specs` on loopback ports, speaking TLS when `tls` is given.
fn start_tls(specs: &[TableSpec], n: usize, tls: Option<&Tls>) -> (Vec<TcpServerHandle>, Vec<String>) {
    let map = ShardMap::even(n);
    let handles: Vec<TcpServerHandle> = (0..n)
        .map(|i| {
            let server = Arc::new(Server::new(i, specs, &map.vshards_of(i)));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let cfg = ServeConfig { token: TOKEN.to_vec(), max_frame: MAX, threads: 1, tls: tls.cloned() };
            serve(listener, server, cfg).unwrap()
        })
        .collect();
    let addrs = handles.iter().map(|h| h.addr().to_string()).collect();
    (handles, addrs)
}

fn client(addrs: &[String], specs: Vec<TableSpec>, f16: bool) -> TcpClient {
    let opts = ClientOptions { f16, io_timeout: Some(Duration::from_secs(30)), ..ClientOptions::default() };
    TcpClient::connect(addrs, ShardMap::even(addrs.len()), specs, TOKEN, "worker 0", opts).unwrap()
}

fn keys(n: u64) -> Vec<u64> {
    (0..n).map(|k| k * 1_000_003 + 7).collect()
}

fn grads(n: usize, round: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7 + round * 3) % 19) as f32 * 0.015625 - 0.125).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn tcp_pull_and_push_match_the_in_process_cluster_bit_for_bit() {
    for delta_keys in [false, true] {
        pulls_and_pushes_match_the_in_process_cluster(delta_keys);
    }
}

fn pulls_and_pushes_match_the_in_process_cluster(delta_keys: bool) {
    let specs = specs();
    let (_servers, addrs) = start(&specs, 2);
    let opts = ClientOptions { delta_keys, io_timeout: Some(Duration::from_secs(30)), ..ClientOptions::default() };
    let mut tcp = TcpClient::connect(&addrs, ShardMap::even(2), specs.clone(), TOKEN, "worker 0", opts).unwrap();
    let local = LocalCluster::new(specs.clone(), 2, LocalClocks::new(1, Staleness::Unbounded, 0));
    let mut loc = local.client(0, 0);
    // Large enough that each server groups its share by virtual shard before the lookups.
    let all = keys(6000);
    // A batch held by server 0 alone takes the client's direct-read path.
    let map = ShardMap::even(2);
    let only0: Vec<u64> = all.iter().copied().filter(|&k| map.server_of(k) == 0).take(50).collect();
    for round in 0..4 {
        for (table, spec) in specs.iter().enumerate() {
            let t = table as u32;
            for batch in [&all[..], &all[100..350], &only0[..], &[]] {
                let n = batch.len() * spec.dim;
                let (mut a, mut b) = (vec![0f32; n], vec![1f32; n]);
                tcp.pull(t, batch, &mut a).unwrap();
                loc.pull(t, batch, &mut b).unwrap();
                assert_eq!(bits(&a), bits(&b), "round {round} table {table}");
                let g = grads(n, round);
                tcp.push(t, batch, &g).unwrap();
                loc.push(t, batch, &g).unwrap();
            }
        }
    }
    assert_eq!(tcp.stats().keys_pulled, loc.stats().keys_pulled);
    assert_eq!(tcp.stats().bytes_pulled, loc.stats().bytes_pulled);
    assert_eq!(tcp.stats().bytes_pushed, loc.stats().bytes_pushed);
    assert_eq!(tcp.tables(), &specs[..]);
}

#[test]
fn f16_values_round_trip_within_f16_precision() {
    let specs = specs();
    let (_a, addrs_a) = start(&specs, 2);
    let (_b, addrs_b) = start(&specs, 2);
    let (mut half, mut full_a, mut full_b) =
        (client(&addrs_a, specs.clone(), true), client(&addrs_a, specs.clone(), false), client(&addrs_b, specs, false));
    let ks = keys(300);
    let dim = 5;
    let (mut h, mut f) = (vec![0f32; ks.len() * dim], vec![0f32; ks.len() * dim]);
    half.pull(0, &ks, &mut h).unwrap();
    full_a.pull(0, &ks, &mut f).unwrap();
    for (x, y) in h.iter().zip(&f) {
        assert!((x - y).abs() <= y.abs() / 1024.0 + 1e-7, "f16 {x} vs f32 {y}");
    }
    assert!(h != f, "latent inits are not all f16-exact, so some values should differ");
    // Gradients that f16 holds exactly update the rows exactly as f32 gradients do.
    let g = grads(ks.len() * dim, 1);
    half.push(0, &ks, &g).unwrap();
    full_b.push(0, &ks, &g).unwrap();
    let mut fb = vec![0f32; f.len()];
    full_a.pull(0, &ks, &mut f).unwrap();
    full_b.pull(0, &ks, &mut fb).unwrap();
    assert_eq!(bits(&f), bits(&fb));
    assert_eq!(half.stats().bytes_pulled, (ks.len() * 8 + ks.len() * dim * 2) as u64);
    assert_eq!(half.stats().bytes_pushed, half.stats().bytes_pulled);
}

/// A raw connection, authenticated when `token` is given.
fn raw(addr: &str, token: Option<&[u8]>) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if let Some(token) = token {
        let mut p = Vec::new();
        Hello { token: token.to_vec(), role: "raw".into() }.encode(&mut p);
        send(&mut s, Kind::Hello, 0, &p);
        assert_eq!(reply(&mut s).0.kind, Kind::Ack);
    }
    s
}

fn send(s: &mut TcpStream, kind: Kind, id: u32, payload: &[u8]) {
    let mut f = Vec::new();
    frame::write_frame(&mut f, kind, 0, id, payload);
    s.write_all(&f).unwrap();
}

fn reply(s: &mut TcpStream) -> (Header, Vec<u8>) {
    let mut p = Vec::new();
    let h = frame::read_frame(s, MAX, &mut p).unwrap();
    (h, p)
}

/// Expects one Error frame whose message contains `needle`, then the end of the connection.
fn refused_then_closed(s: &mut TcpStream, needle: &str) {
    let (h, p) = reply(s);
    let msg = frame::decode_text(&p);
    assert_eq!(h.kind, Kind::Error, "{msg}");
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    match s.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection should be closed, got {other:?}"),
    }
}

fn pull_payload(table: u32, keys: &[u64]) -> Vec<u8> {
    let mut p = Vec::new();
    frame::encode_pull(table, keys, 0, &mut p);
    p
}

#[test]
fn bad_frames_close_only_their_own_connection() {
    let specs = specs();
    let (_servers, addrs) = start(&specs, 1);
    let addr = addrs[0].as_str();
    let mut good = client(&addrs, specs.clone(), false);
    let ks = keys(20);
    let mut w = vec![0f32; ks.len() * 5];
    good.pull(0, &ks, &mut w).unwrap();

    // Truncated: a header announcing 100 payload bytes, 10 bytes, then the end of the stream.
    let mut s = raw(addr, Some(TOKEN));
    s.write_all(&frame::encode_header(Kind::Pull, 0, 9, 100)).unwrap();
    s.write_all(&[0u8; 10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    refused_then_closed(&mut s, "truncated frame");

    // Oversized: refused from the header alone, before any payload is read or allocated.
    let mut s = raw(addr, Some(TOKEN));
    s.write_all(&frame::encode_header(Kind::Pull, 0, 9, MAX + 1)).unwrap();
    refused_then_closed(&mut s, "exceeds the limit");

    let mut h = frame::encode_header(Kind::Pull, 0, 9, 0);
    h[4] = 9;
    let mut s = raw(addr, Some(TOKEN));
    s.write_all(&h).unwrap();
    refused_then_closed(&mut s, "protocol version 9 is not supported");

    let mut h = frame::encode_header(Kind::Pull, 0, 9, 0);
    h[5] = 42;
    let mut s = raw(addr, Some(TOKEN));
    s.write_all(&h).unwrap();
    refused_then_closed(&mut s, "unknown frame kind 42");

    // A malformed payload inside a well-formed frame.
    let mut s = raw(addr, Some(TOKEN));
    send(&mut s, Kind::Pull, 3, &[1, 2, 3]);
    refused_then_closed(&mut s, "truncated pull request");

    // Before authenticating, a frame may be no larger than the largest Hello.
    let mut s = raw(addr, None);
    s.write_all(&frame::encode_header(Kind::Hello, 0, 0, 200_000)).unwrap();
    refused_then_closed(&mut s, "exceeds the limit of 131074 bytes");

    // No Hello: a Pull first.
    let mut s = raw(addr, None);
    send(&mut s, Kind::Pull, 1, &pull_payload(0, &[1, 2]));
    refused_then_closed(&mut s, "expected Hello");

    let mut s = raw(addr, None);
    let mut p = Vec::new();
    Hello { token: b"guess".to_vec(), role: "intruder".into() }.encode(&mut p);
    send(&mut s, Kind::Hello, 0, &p);
    refused_then_closed(&mut s, "authentication failed");

    // The connection opened before all this, and a new one, still work.
    let mut again = vec![0f32; w.len()];
    good.pull(0, &ks, &mut again).unwrap();
    assert_eq!(bits(&w), bits(&again));
    client(&addrs, specs, false).pull(0, &ks, &mut again).unwrap();
    assert_eq!(bits(&w), bits(&again));
}

#[test]
fn a_wrong_token_fails_connect_naming_the_server() {
    let specs = specs();
    let (_servers, addrs) = start(&specs, 2);
    let opts = ClientOptions::default();
    let err = TcpClient::connect(&addrs, ShardMap::even(2), specs, b"nope", "worker 1", opts).err().unwrap();
    match err {
        PsError::Remote { peer, message } => {
            assert_eq!(peer, format!("server 0 ({})", addrs[0]));
            assert!(message.contains("authentication failed"), "{message}");
        }
        e => panic!("expected a remote refusal, got {e}"),
    }
}

#[test]
fn refused_requests_keep_the_connection_usable() {
    let specs = specs();
    let (_servers, addrs) = start(&specs, 2);
    let map = ShardMap::even(2);
    let mine: Vec<u64> = (0..).filter(|&k| map.server_of(k) == 0).take(3).collect();
    let theirs = (mine[0] + 1..).find(|&k| map.server_of(k) == 1).unwrap();
    // A request within the frame limit whose reply (5 floats a key) would not be.
    let many: Vec<u64> = (0..).filter(|&k| map.server_of(k) == 0).take(MAX / 16).collect();

    let mut s = raw(&addrs[0], Some(TOKEN));
    for (id, (table, keys, needle)) in [
        (0, vec![mine[1], mine[0]], "keys must be sorted and unique"),
        (0, vec![mine[0], theirs], "is not owned by server 0"),
        (7, vec![mine[0]], "unknown table 7"),
        (0, many, "over the frame limit"),
    ]
    .into_iter()
    .enumerate()
    {
        send(&mut s, Kind::Pull, id as u32, &pull_payload(table, &keys));
        let (h, p) = reply(&mut s);
        assert_eq!((h.kind, h.id), (Kind::Error, id as u32));
        assert!(frame::decode_text(&p).contains(needle), "{}", frame::decode_text(&p));
    }
    let mut push = Vec::new();
    frame::encode_push(9, &mine, &[0.5; 3], 0, &mut push);
    send(&mut s, Kind::Push, 10, &push);
    assert!(frame::decode_text(&reply(&mut s).1).contains("unknown table 9"));
    // Still in step: a good pull, answered in f16 because it asked in f16.
    let mut f = Vec::new();
    frame::write_frame(&mut f, Kind::Pull, FLAG_F16, 11, &pull_payload(1, &mine));
    s.write_all(&f).unwrap();
    let (h, p) = reply(&mut s);
    assert_eq!((h.kind, h.id, h.flags, p.len()), (Kind::Values, 11, FLAG_F16, 3 * 2));

    // Through the client: a table the servers do not have is their refusal, and the client goes on.
    let mut more = specs.clone();
    more.push(TableSpec::for_model("extra", &ModelSpec::lr(), &Optimizer::sgd_default()));
    let mut c = client(&addrs, more, false);
    let ks = keys(40);
    match c.pull(2, &ks, &mut [0f32; 40]) {
        Err(PsError::Remote { peer, message }) => {
            assert!(peer.starts_with("server "), "{peer}");
            assert!(message.contains("unknown table 2"), "{message}");
        }
        other => panic!("expected a remote refusal, got {other:?}"),
    }
    c.pull(1, &ks, &mut [0f32; 40]).unwrap();
    // The client's own checks come first.
    assert!(matches!(c.pull(1, &[5, 5], &mut [0.0; 2]), Err(PsError::UnsortedKeys { index: 1, .. })));
    assert!(matches!(c.push(0, &[1, 2], &[0.0; 3]), Err(PsError::LengthMismatch { dim: 5, .. })));
    assert!(matches!(c.push(3, &[1], &[0.0]), Err(PsError::UnknownTable { table: 3, .. })));
}

#[test]
fn a_stopped_server_is_named_as_disconnected() {
    let specs = specs();
    let (mut servers, addrs) = start(&specs, 2);
    let mut c = client(&addrs, specs, false);
    let ks = keys(100);
    let mut w = vec![0f32; 100];
    c.pull(1, &ks, &mut w).unwrap();
    servers.pop().unwrap().shutdown();
    for _ in 0..2 {
        match c.pull(1, &ks, &mut w) {
            Err(PsError::Disconnected { peer, .. }) => assert_eq!(peer, format!("server 1 ({})", addrs[1])),
            other => panic!("expected server 1 to be reported lost, got {other:?}"),
        }
    }
    // Keys of the surviving server are still served.
    let map = ShardMap::even(2);
    let on0: Vec<u64> = ks.iter().copied().filter(|&k| map.server_of(k) == 0).collect();
    c.push(1, &on0, &vec![0.1; on0.len()]).unwrap();
}

#[test]
fn connecting_to_nothing_names_the_server() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let err = TcpClient::connect(
        std::slice::from_ref(&addr),
        ShardMap::even(1),
        specs(),
        TOKEN,
        "w",
        ClientOptions::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains(&format!("server 0 ({addr})")), "{err}");
}

#[test]
fn a_started_pull_reads_the_rows_before_later_pushes_and_blocks_other_calls() {
    let specs = specs();
    let (_servers, addrs) = start(&specs, 2);
    let mut tcp = client(&addrs, specs.clone(), false);
    let ks = keys(300);
    let n = ks.len() * specs[0].dim;
    let (mut before, mut started) = (vec![0f32; n], vec![0f32; n]);
    tcp.pull(0, &ks, &mut before).unwrap();
    tcp.pull_start(0, &ks).unwrap();
    // Nothing else may cross the connections while the replies are due.
    assert!(matches!(tcp.push(0, &ks, &grads(n, 0)), Err(PsError::Protocol(_))));
    assert!(matches!(tcp.pull_start(0, &ks), Err(PsError::Protocol(_))));
    assert!(matches!(tcp.pull_finish(1, &ks, &mut started[..ks.len()]), Err(PsError::Protocol(_))));
    // The refused calls left the pull in flight.
    tcp.pull_finish(0, &ks, &mut started).unwrap();
    assert_eq!(bits(&before), bits(&started));
    assert!(matches!(tcp.pull_finish(0, &ks, &mut started), Err(PsError::Protocol(_))));
}

/// A CA and a certificate for 127.0.0.1 signed by it, from `scripts/dev-certs.sh`.
fn dev_certs(dir: &std::path::Path) -> Tls {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev-certs.sh");
    let out = std::process::Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(out.status.success(), "dev-certs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let files = crate::TlsFiles { cert: dir.join("node.pem"), key: dir.join("node.key"), ca: dir.join("ca.pem") };
    Tls::load(&files).unwrap()
}

#[test]
fn tls_serves_the_same_rows_and_refuses_plain_tcp_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_certs(&dir.path().join("job"));
    let specs = specs();
    let (_h, addrs) = start_tls(&specs, 2, Some(&tls));
    let opts =
        ClientOptions { tls: Some(tls.clone()), io_timeout: Some(Duration::from_secs(30)), ..Default::default() };
    let mut c = TcpClient::connect(&addrs, ShardMap::even(2), specs.clone(), TOKEN, "t", opts).unwrap();
    let keys: Vec<u64> = (0..5000).map(|i| i * 7 + 3).collect();
    let grads: Vec<f32> = keys.iter().map(|&k| (k % 13) as f32 * 0.01).collect();
    c.push(1, &keys, &grads).unwrap();
    let mut over_tls = vec![0f32; keys.len()];
    c.pull(1, &keys, &mut over_tls).unwrap();
    // The same push over plain TCP gives the same rows.
    let (_p, plain_addrs) = start(&specs, 2);
    let mut p = client(&plain_addrs, specs.clone(), false);
    p.push(1, &keys, &grads).unwrap();
    let mut plain = vec![0f32; keys.len()];
    p.pull(1, &keys, &mut plain).unwrap();
    assert_eq!(over_tls, plain);
    // A plain client is refused, and told why in the clear.
    let err = TcpClient::connect(&addrs, ShardMap::even(2), specs.clone(), TOKEN, "t", ClientOptions::default())
        .err()
        .expect("plain TCP to a TLS port must be refused")
        .to_string();
    assert!(err.contains("speaks TLS only"), "{err}");
    // A TLS client to a plain port fails its handshake.
    let opts = ClientOptions { tls: Some(tls.clone()), ..Default::default() };
    let err = TcpClient::connect(&plain_addrs, ShardMap::even(2), specs.clone(), TOKEN, "t", opts).err().unwrap();
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
    // A certificate from another CA is refused.
    let stranger = dev_certs(&dir.path().join("other"));
    let opts = ClientOptions { tls: Some(stranger), ..Default::default() };
    let err = TcpClient::connect(&addrs, ShardMap::even(2), specs, TOKEN, "t", opts).err().unwrap();
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
}

#[test]
fn tls_files_that_cannot_be_used_are_named() {
    let dir = tempfile::tempdir().unwrap();
    dev_certs(dir.path());
    let p = |n: &str| dir.path().join(n);
    let files = |cert: &str, key: &str, ca: &str| crate::TlsFiles { cert: p(cert), key: p(key), ca: p(ca) };
    let err = Tls::load(&files("missing.pem", "node.key", "ca.pem")).unwrap_err().to_string();
    assert!(err.contains("missing.pem") && err.contains("cannot read it"), "{err}");
    let err = Tls::load(&files("node.key", "node.key", "ca.pem")).unwrap_err().to_string();
    assert!(err.contains("node.key") && err.contains("no certificate"), "{err}");
    let err = Tls::load(&files("node.pem", "node.pem", "ca.pem")).unwrap_err().to_string();
    assert!(err.contains("node.pem") && err.contains("no private key"), "{err}");
    let err = Tls::load(&files("node.pem", "ca.key", "ca.pem")).unwrap_err().to_string();
    assert!(err.contains("ca.key") && err.contains("does not go with"), "{err}");
}

//! `starling serve` as a client sees it: a real server process over HTTP.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starling::{model_file, trainer, JobConfig};
use starling_core::ModelKind;

const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// A `starling serve` process, killed on drop.
struct Server {
    child: Child,
    addr: String,
    said: Arc<Mutex<String>>,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--model", model.to_str().unwrap(), "--addr", "127.0.0.1:0", "--reload-every-ms", "50"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let said = Arc::new(Mutex::new(String::new()));
        let (pipe, sink) = (child.stderr.take().unwrap(), said.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once(" on http://") {
                    let _ = tx.send(addr.to_string());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start:\n{}", said.lock().unwrap()));
        Server { child, addr, said }
    }

    /// One request on a fresh connection: the status and the body.
    fn call(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let ct = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{ct}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        // A server that refuses a large body early may close before it is all sent.
        let _ = s.write_all(body);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP reply: {text:?}"));
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    fn predict(&self, content_type: &str, body: &str) -> (u64, Vec<f32>) {
        let (status, reply) = self.call("POST", "/predict", Some(content_type), body.as_bytes());
        assert_eq!(status, 200, "{reply}\n{}", self.said.lock().unwrap());
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        let p = v["predictions"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        (v["model_version"].as_u64().unwrap(), p)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `starling predict` writes for `data`.
fn cli_predictions(model: &Path, data: &Path) -> Vec<f32> {
    let out = Command::new(BIN)
        .args(["predict", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect()
}

/// A model trained on the generated data's `file`, saved in `dir`.
fn trained(dir: &Path, file: &str, kind: ModelKind, passes: u32) -> PathBuf {
    let data = common::gen_data();
    let mut job = JobConfig::default();
    job.data.train = vec![data.join(file)];
    job.features.hash_bits = 18;
    job.model.kind = kind;
    job.model.embedding_dim = 4;
    job.model.mlp = vec![16, 8];
    job.train.passes = passes;
    let (model, _) = trainer::train(&job, true).unwrap();
    let path = dir.join(format!("{}-{passes}.model", kind.name()));
    model_file::save(&model, &path).unwrap();
    path
}

/// The first `n` lines of the generated data's `file` (and its header), as a file and as text.
fn head(dir: &Path, file: &str, n: usize) -> (PathBuf, String) {
    let text = std::fs::read_to_string(common::gen_data().join(file)).unwrap();
    let extra = usize::from(file.ends_with(".csv"));
    let lines: String = text.lines().take(n + extra).map(|l| format!("{l}\n")).collect();
    let path = dir.join(file);
    std::fs::write(&path, &lines).unwrap();
    (path, lines)
}

/// VW lines as JSON rows: `{"ns": {"name": value, ...}, ...}`, names without values as lists.
fn vw_json(lines: &str) -> String {
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| {
            let mut row = serde_json::Map::new();
            for ns in l.split('|').skip(1) {
                let mut words = ns.split_whitespace();
                let name = words.next().unwrap();
                let mut feats = serde_json::Map::new();
                for w in words {
                    let (f, v) = w.split_once(':').unwrap_or((w, "1"));
                    feats.insert(f.into(), serde_json::from_str(v).unwrap());
                }
                row.insert(name.into(), feats.into());
            }
            row.into()
        })
        .collect();
    serde_json::json!({ "rows": rows }).to_string()
}

/// CSV lines (header first) as JSON rows: numbers for the numeric columns, strings for the rest,
/// empty cells left out.
fn csv_json(lines: &str) -> String {
    let mut it = lines.lines();
    let header: Vec<&str> = it.next().unwrap().split(',').collect();
    let rows: Vec<serde_json::Value> = it
        .map(|l| {
            let mut row = serde_json::Map::new();
            for (name, cell) in header.iter().zip(l.split(',')).skip(1).filter(|(_, c)| !c.is_empty()) {
                let v =
                    if name.starts_with('I') { serde_json::from_str(cell).unwrap() } else { cell.to_string().into() };
                row.insert(name.to_string(), v);
            }
            row.into()
        })
        .collect();
    serde_json::json!({ "rows": rows }).to_string()
}

#[test]
fn predictions_equal_starling_predict_for_lines_and_json() {
    let dir = tempfile::tempdir().unwrap();
    for (file, kind, to_json) in [
        ("test.vw", ModelKind::Lr, vw_json as fn(&str) -> String),
        ("test.vw", ModelKind::Fm, vw_json),
        ("test.csv", ModelKind::DeepFm, csv_json),
    ] {
        let model = trained(dir.path(), file.replace("test", "train").as_str(), kind, 1);
        let (data, lines) = head(dir.path(), file, 300);
        let want = cli_predictions(&model, &data);
        assert_eq!(want.len(), 300);
        let server = Server::start(&model, &[]);
        let (_, as_lines) = server.predict("text/plain", &lines);
        assert_eq!(as_lines, want, "{kind:?}: lines");
        let json = to_json(&lines);
        let (_, as_json) = server.predict("application/json", &json);
        assert_eq!(as_json, want, "{kind:?}: JSON rows");
    }
}

#[test]
fn a_model_written_during_a_stream_of_requests_is_picked_up_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let first = trained(dir.path(), "train.vw", ModelKind::Lr, 1);
    let second = trained(dir.path(), "train.vw", ModelKind::Fm, 1);
    let (data, lines) = head(dir.path(), "test.vw", 50);
    let (want1, want2) = (cli_predictions(&first, &data), cli_predictions(&second, &data));
    let served = dir.path().join("served.model");
    std::fs::copy(&first, &served).unwrap();
    let server = Arc::new(Server::start(&served, &["--max-delay-us", "500"]));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (server, stop, lines) = (server.clone(), stop.clone(), lines.clone());
            let (want1, want2) = (want1.clone(), want2.clone());
            std::thread::spawn(move || {
                let mut versions = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (version, p) = server.predict("text/plain", &lines);
                    // Every answer is wholly one model's.
                    let want = if version == 1 { &want1 } else { &want2 };
                    assert_eq!(&p, want, "version {version}");
                    versions.push(version);
                }
                versions
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A torn file (written in place, not renamed) is refused; the served model stays.
    let bytes = std::fs::read(&second).unwrap();
    std::fs::write(&served, &bytes[..bytes.len() / 2]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.said.lock().unwrap().contains("keeping model version 1") {
        assert!(Instant::now() < deadline, "the torn model was not reported:\n{}", server.said.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // Saved as Starling saves models: a temporary file renamed over the old one.
    let model = model_file::load(&second).unwrap();
    model_file::save(&model, &served).unwrap();
    while !server.said.lock().unwrap().contains("as model version 2") {
        assert!(Instant::now() < deadline, "the new model was not loaded:\n{}", server.said.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let versions: Vec<Vec<u64>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for v in &versions {
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "a client saw the old model after the new one");
        assert_eq!((v.first(), v.last()), (Some(&1), Some(&2)), "each client saw both models");
    }
    let (status, metrics) = server.call("GET", "/metrics", None, b"");
    assert_eq!(status, 200);
    assert!(metrics.contains("starling_serve_model_version 2\n"), "{metrics}");
    // The torn file may have been seen more than once as it was written.
    let failures = metrics.lines().find_map(|l| l.strip_prefix("starling_serve_model_load_failures_total "));
    assert!(failures.is_some_and(|n| n != "0"), "{metrics}");
    assert!(
        !metrics.lines().any(|l| l.starts_with("starling_serve_requests_total{code=\"5") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// A request (method, path, content type, body) and the status and reason it should get.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, u16, &'a str);

#[test]
fn bad_requests_get_a_4xx_with_the_reason_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path(), "train.csv", ModelKind::Lr, 1);
    let server = Server::start(&model, &["--max-body-bytes", "2000"]);
    let json = "application/json";
    let (_, lines) = head(dir.path(), "test.csv", 1);
    let bad_lines = format!("{}\n1,\"x\n", lines.lines().next().unwrap());
    let cases: &[Case] = &[
        ("POST", "/predict", Some(json), "{\"rows\": [", 400, "malformed request"),
        (
            "POST",
            "/predict",
            Some(json),
            r#"{"rows": [{"I1": 3}, {"I1": 3, "height": 2}]}"#,
            400,
            "row 2: unknown field `height`",
        ),
        (
            "POST",
            "/predict",
            Some(json),
            r#"{"rows": [{"I1": [1]}]}"#,
            400,
            "row 1: field `I1`: expected a number or a string, got a list",
        ),
        ("POST", "/predict", Some(json), r#"{"rows": [], "extra": 1}"#, 400, "unknown field `extra`"),
        ("POST", "/predict", Some(json), r#"{"rows": []}"#, 400, "no rows"),
        ("POST", "/predict", Some("text/plain"), &bad_lines, 400, "line 2: column 2"),
        ("POST", "/predict", Some("image/png"), "x", 415, "Content-Type"),
        ("GET", "/predict", None, "", 405, "takes POST"),
        ("GET", "/nowhere", None, "", 404, "POST /predict"),
    ];
    for &(method, path, ct, body, code, reason) in cases {
        let (status, reply) = server.call(method, path, ct, body.as_bytes());
        assert_eq!(status, code, "{body}: {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(reason), "{body}: {error}");
    }
    let big = format!("{{\"rows\": [{}]}}", vec!["{\"I1\": 1}"; 400].join(","));
    let (status, reply) = server.call("POST", "/predict", Some(json), big.as_bytes());
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("limit of 2000 bytes"), "{reply}");
    let (version, p) = server.predict(json, r#"{"rows": [{"I1": 3, "C1": "ab"}, {}]}"#);
    assert_eq!((version, p.len()), (1, 2));
    let (status, health) = server.call("GET", "/healthz", None, b"");
    assert_eq!(status, 200);
    assert!(health.contains("\"model_version\":1"), "{health}");
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained(dir.path(), "train.vw", ModelKind::Lr, 1);
    let (_, lines) = head(dir.path(), "test.vw", 20);
    let server = Server::start(&model, &[]);
    for _ in 0..3 {
        server.predict("text/plain", &lines);
    }
    server.call("GET", "/nowhere", None, b"");
    let (status, text) = server.call("GET", "/metrics", None, b"");
    assert_eq!(status, 200);
    // The reference parser of the format, from the Prometheus project's Python client.
    let script = "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n\
                  out = {}\nfor f in parse(sys.stdin.read()):\n    for s in f.samples:\n        \
                  out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value\nprint(json.dumps(out))\n";
    let mut py = Command::new(common::python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    let samples: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(samples["starling_serve_requests_total{\"code\": \"200\"}"], 3.0, "{samples}");
    assert_eq!(samples["starling_serve_requests_total{\"code\": \"404\"}"], 1.0, "{samples}");
    assert_eq!(samples["starling_serve_rows_total{}"], 60.0, "{samples}");
    assert_eq!(samples["starling_serve_request_duration_seconds_count{}"], 4.0, "{samples}");
    assert_eq!(samples["starling_serve_model_version{}"], 1.0, "{samples}");
}

//! Input at `s3://` URLs, against a real S3 protocol server (moto, from the test venv) on loopback.
//! Built only with `--features object-store` (scripts/test.sh runs it).
#![cfg(feature = "object-store")]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rows, shared_data};

const BIN: &str = env!("CARGO_BIN_EXE_starling");

fn python() -> PathBuf {
    let p = std::env::var_os("STARLING_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/starling/venv/bin/python")
    });
    assert!(p.exists(), "{} is missing: run scripts/pyenv.sh (scripts/test.sh does)", p.display());
    p
}

/// A moto S3 server on a free loopback port, killed on drop.
struct S3 {
    child: Child,
    endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_s3() -> S3 {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(python())
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "moto did not start on {endpoint}");
        std::thread::sleep(Duration::from_millis(100));
    }
    S3 { child, endpoint }
}

/// Uploads `files` as `s3://bucket/<key>` with boto3.
fn put(s3: &S3, bucket: &str, files: &[(&str, &Path)]) {
    let mut code = format!(
        "import boto3\nc = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='k', aws_secret_access_key='s')\nc.create_bucket(Bucket='{bucket}')\n",
        s3.endpoint
    );
    for (key, path) in files {
        code.push_str(&format!("c.upload_file({:?}, '{bucket}', '{key}')\n", path.to_str().unwrap()));
    }
    let o = Command::new(python()).args(["-c", &code]).output().unwrap();
    assert!(o.status.success(), "upload failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn starling(s3: &S3, staging: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("AWS_ENDPOINT", &s3.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_REGION", "us-east-1")
        .env("STARLING_STAGING", staging)
        .output()
        .unwrap()
}

#[test]
fn a_folder_at_an_s3_url_trains_the_model_of_the_local_files() {
    let d = tempfile::tempdir().unwrap();
    let a9a = shared_data("a9a/a9a");
    // Two halves of a9a in a Spark-like folder, with a _SUCCESS marker that must be skipped.
    let text = std::fs::read_to_string(&a9a).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    let (p0, p1, ok) = (d.path().join("p0"), d.path().join("p1"), d.path().join("ok"));
    std::fs::write(&p0, a.join("\n") + "\n").unwrap();
    std::fs::write(&p1, b.join("\n") + "\n").unwrap();
    std::fs::write(&ok, "").unwrap();
    let s3 = start_s3();
    put(&s3, "data", &[("a9a/part-00000", &p0), ("a9a/part-00001", &p1), ("a9a/_SUCCESS", &ok)]);

    let staging = d.path().join("staging");
    let (remote, local) = (d.path().join("remote.model"), d.path().join("local.model"));
    let common = ["train", "-q", "--format", "libsvm", "--model", "fm", "--k", "4", "--save"];
    let o = starling(&s3, &staging, &[&common[..], &[remote.to_str().unwrap(), "--train", "s3://data/a9a/"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = starling(
        &s3,
        &staging,
        &[&common[..], &[local.to_str().unwrap(), "--train", p0.to_str().unwrap(), p1.to_str().unwrap()]].concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (r, l) = (starling::model_file::load(&remote).unwrap(), starling::model_file::load(&local).unwrap());
    assert!(!rows(&l).is_empty() && rows(&r) == rows(&l), "the S3 folder trained another model");

    // A missing object is a clear error naming the URL.
    let o = starling(&s3, &staging, &["train", "-q", "--format", "libsvm", "--train", "s3://data/nothing/"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("s3://data/nothing/"), "{err}");
}

/// No HDFS name node can run here (it needs a JVM and Hadoop's jars from Maven); what is checked
/// is that an unreachable one ends in a message naming the URL, within the stall limit.
#[cfg(feature = "hdfs")]
#[test]
fn an_unreachable_hdfs_name_node_is_a_clear_error_not_a_hang() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("hdfs://127.0.0.1:{port}/data/a9a");
    let start = Instant::now();
    let o = Command::new(BIN)
        .args(["train", "-q", "--format", "libsvm", "--train", &url])
        .env("STARLING_REMOTE_TIMEOUT_SECS", "3")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&url), "{err}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}

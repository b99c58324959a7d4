//! Input at `s3://` URLs, against a real S3 protocol server (moto, from the test venv) on loopback.
//! Built only with `--features object-store` (scripts/test.sh runs it).
#![cfg(feature = "object-store")]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rows, shared_data};

const BIN: &str = env!("CARGO_BIN_EXE_starling");

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
    let child = Command::new(common::python())
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
    let o = Command::new(common::python()).args(["-c", &code]).output().unwrap();
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

/// Runs `code` (Python, with an S3 client `c`) against `s3`; returns what it prints.
fn boto(s3: &S3, code: &str) -> String {
    let code = format!(
        "import boto3\nc = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='k', aws_secret_access_key='s')\n{code}",
        s3.endpoint
    );
    let o = Command::new(common::python()).args(["-c", &code]).output().unwrap();
    assert!(o.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `starling eval` of `model` on the generated holdout: its metrics line.
fn eval_line(s3: &S3, staging: &Path, model: &str) -> String {
    let test = common::gen_data().join("test.libsvm");
    let o = starling(s3, staging, &["eval", "--model", model, "--data", test.to_str().unwrap()]);
    assert!(o.status.success(), "eval {model}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().find(|l| l.contains("logloss")).unwrap_or_default().to_string()
}

#[test]
fn checkpoints_at_an_s3_url_recover_a_killed_server_and_load_as_models() {
    let d = tempfile::tempdir().unwrap();
    let data = common::gen_data();
    let job = d.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[data]\ntrain = [{:?}]\n[features]\nhash_bits = 18\n[optimizer]\nname = \"adagrad\"\n[train]\nbatch_size = 10\npasses = 3\n[cluster]\nheartbeat_secs = 0.2\nheartbeat_timeout_secs = 1.5\n[checkpoint]\nevery_steps = 400\nkeep = 2\n",
            data.join("train.libsvm")
        ),
    )
    .unwrap();
    let s3 = start_s3();
    boto(&s3, "c.create_bucket(Bucket='ckpt')");
    let staging = d.path().join("staging");
    let (j, local) = (job.to_str().unwrap(), d.path().join("local.model"));
    let two_by_two = ["launch", "--servers", "2", "--workers", "2", "-c", j];
    // The fault-free model, saved locally.
    let o = starling(&s3, &staging, &[&two_by_two[..], &["--save", local.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same job checkpointing to S3; a server is killed once a checkpoint is there.
    let mut child = Command::new(BIN)
        .args([&two_by_two[..], &["--checkpoint-dir", "s3://ckpt/run", "--save", "s3://ckpt/model"]].concat())
        .env("AWS_ENDPOINT", &s3.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_REGION", "us-east-1")
        .env("STARLING_STAGING", &staging)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let listed = "r = c.list_objects_v2(Bucket='ckpt', Prefix='run/')\nprint(sum(o['Key'].endswith('manifest.toml') for o in r.get('Contents', [])))";
    let start = Instant::now();
    while boto(&s3, listed).trim() == "0" {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint reached S3");
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = common::children(child.id(), "server")[0];
    // SAFETY: plain kill(2) of a process this test started.
    unsafe { libc::kill(server, libc::SIGKILL) };
    let out = std::mem::take(&mut child.stderr).unwrap();
    let said = std::io::read_to_string(out).unwrap();
    assert!(child.wait().unwrap().success(), "{said}");
    assert!(said.contains("rolling every table back to s3://ckpt/run/step-"), "{said}");
    assert!(said.contains("checkpoint written to s3://ckpt/model"), "{said}");
    // Under BSP the recovered model is the fault-free one, read back from S3 either way.
    let want = eval_line(&s3, &staging, local.to_str().unwrap());
    assert!(want.contains("logloss"), "{want}");
    assert_eq!(eval_line(&s3, &staging, "s3://ckpt/model"), want);
    assert_eq!(eval_line(&s3, &staging, "s3://ckpt/run"), want);
    // `keep = 2`: older checkpoints were deleted from the bucket.
    let steps = "r = c.list_objects_v2(Bucket='ckpt', Prefix='run/')\nprint(sorted({o['Key'].split('/')[1] for o in r['Contents']}))";
    let steps = boto(&s3, steps);
    assert_eq!(steps.matches("step-").count(), 2, "{steps}");
    // A flipped byte in the newest checkpoint's shard: the one before is used, the object named.
    let flip = "r = c.list_objects_v2(Bucket='ckpt', Prefix='run/')\nk = sorted(o['Key'] for o in r['Contents'] if o['Key'].endswith('server-0000.shard'))[-1]\nb = bytearray(c.get_object(Bucket='ckpt', Key=k)['Body'].read())\nb[len(b) // 2] ^= 1\nc.put_object(Bucket='ckpt', Key=k, Body=bytes(b))\nprint(k)";
    let key = boto(&s3, flip);
    let test = data.join("test.libsvm");
    let o = starling(&s3, &staging, &["eval", "--model", "s3://ckpt/run", "--data", test.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let named = format!("checkpoint s3://ckpt/{}: checksum mismatch", key.trim());
    assert!(err.contains("passing over checkpoint s3://ckpt/run/step-") && err.contains(&named), "{err}");
    // No scratch copies are left behind, but for the killed server's: a process killed while it
    // writes a checkpoint cannot remove its scratch directory (named `{dir key}-{pid}-...`).
    let scratch = staging.join("checkpoints");
    let killed = format!("-{server}-");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|r| r.flatten().map(|e| e.path()).filter(|p| !p.to_string_lossy().contains(&killed)).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

//! `starling serve`: predictions over HTTP from a saved model.
//!
//! `POST /predict` takes rows as JSON feature maps or as lines of the model's input format;
//! the rows of all waiting requests are scored together by one scoring thread (micro-batching
//! under a delay cap); a newer model file or complete checkpoint at the model path is loaded
//! beside the served one and swapped in whole; `GET /metrics` answers in Prometheus' text
//! format and `GET /healthz` says which model is served. See `docs/serving.md`.

mod batcher;
mod loaded;
mod rows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};

use crate::http::{self, Refusal, Reply};
use crate::telemetry::{exponential_buckets, Counter, Gauge, Histogram, Registry};

pub use batcher::Limits;
pub use loaded::Loaded;
pub use rows::{RowError, RowReader};

/// How `starling serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A model file, a checkpoint, or a directory of checkpoints (its newest complete one).
    pub model: PathBuf,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// When a micro-batch is closed.
    pub limits: Limits,
    /// How often the model path is checked for a newer model.
    pub reload_every: Duration,
    /// Requests waiting to be scored before more are refused with 503.
    pub queue: usize,
    /// Threads reading requests (the scoring thread is one more).
    pub http_threads: usize,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The model did not load or cannot be served.
    #[error("{0}")]
    Model(String),
    /// The address could not be listened on.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server's threads could not start.
    #[error("starting the server: {0}")]
    Start(std::io::Error),
}

/// The status codes the server answers with, each counted.
const CODES: [StatusCode; 8] = [
    StatusCode::OK,
    StatusCode::BAD_REQUEST,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// The server's Prometheus metrics.
pub struct ServeMetrics {
    registry: Registry,
    requests: Vec<(StatusCode, Arc<Counter>)>,
    rows: Arc<Counter>,
    latency: Arc<Histogram>,
    batch_rows: Arc<Histogram>,
    version: Arc<Gauge>,
    examples_seen: Arc<Gauge>,
    loaded_at: Arc<Gauge>,
    loads: Arc<Counter>,
    load_failures: Arc<Counter>,
}

impl ServeMetrics {
    fn new() -> Self {
        let r = Registry::default();
        let requests = CODES
            .iter()
            .map(|&c| {
                let counter = r.counter(
                    "starling_serve_requests_total",
                    "HTTP requests answered, by status code.",
                    &[("code", c.as_str())],
                );
                (c, counter)
            })
            .collect();
        ServeMetrics {
            requests,
            rows: r.counter("starling_serve_rows_total", "Rows predicted.", &[]),
            latency: r.histogram(
                "starling_serve_request_duration_seconds",
                "Time from a request's arrival to its reply.",
                &[],
                &exponential_buckets(0.0001, 2.0, 18),
            ),
            batch_rows: r.histogram(
                "starling_serve_batch_rows",
                "Rows scored together in one micro-batch.",
                &[],
                &exponential_buckets(1.0, 2.0, 16),
            ),
            version: r.gauge(
                "starling_serve_model_version",
                "Version of the model served (1 at start, +1 a reload).",
                &[],
            ),
            examples_seen: r.gauge(
                "starling_serve_model_examples_seen",
                "Training examples the model served had seen.",
                &[],
            ),
            loaded_at: r.gauge(
                "starling_serve_model_loaded_timestamp_seconds",
                "When the model served was loaded (Unix time).",
                &[],
            ),
            loads: r.counter("starling_serve_model_loads_total", "Models loaded, the first included.", &[]),
            load_failures: r.counter(
                "starling_serve_model_load_failures_total",
                "Changed models that did not load (the served one was kept).",
                &[],
            ),
            registry: r,
        }
    }

    /// Records a model now served.
    fn loaded(&self, m: &Loaded) {
        self.loads.inc();
        self.version.set(m.version as f64);
        self.examples_seen.set(m.model.examples_seen as f64);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        self.loaded_at.set(now.as_secs_f64());
    }

    fn answered(&self, code: StatusCode, took: Duration) {
        if let Some((_, c)) = self.requests.iter().find(|(s, _)| *s == code) {
            c.inc();
        }
        self.latency.observe(took.as_secs_f64());
    }
}

/// What every request handler shares.
struct State {
    current: Arc<Mutex<Arc<Loaded>>>,
    jobs: SyncSender<batcher::Job>,
    /// Requests whose rows are being read (the batcher waits for them).
    arriving: Arc<AtomicUsize>,
    metrics: Arc<ServeMetrics>,
    max_body_bytes: usize,
}

/// Loads the model, listens, calls `ready` with the address listened on, and serves until
/// the process ends.
pub fn run(opts: &ServeOptions, ready: impl FnOnce(&Loaded, SocketAddr)) -> Result<(), ServeError> {
    let first = Loaded::load(&opts.model, 1).map_err(ServeError::Model)?;
    let listener =
        std::net::TcpListener::bind(opts.addr).map_err(|source| ServeError::Bind { addr: opts.addr, source })?;
    let addr = listener.local_addr().map_err(ServeError::Start)?;
    listener.set_nonblocking(true).map_err(ServeError::Start)?;
    let metrics = Arc::new(ServeMetrics::new());
    metrics.loaded(&first);
    ready(&first, addr);
    let current = Arc::new(Mutex::new(Arc::new(first)));

    let (jobs, queue) = sync_channel(opts.queue.max(1));
    let arriving = Arc::new(AtomicUsize::new(0));
    let (limits, a, m) = (opts.limits, arriving.clone(), metrics.clone());
    std::thread::Builder::new()
        .name("starling-score".into())
        .spawn(move || batcher::run(queue, limits, a, m))
        .map_err(ServeError::Start)?;
    let (path, every, c, m) = (opts.model.clone(), opts.reload_every, current.clone(), metrics.clone());
    std::thread::Builder::new()
        .name("starling-reload".into())
        .spawn(move || loaded::watch(path, every, c, m))
        .map_err(ServeError::Start)?;

    let state = Arc::new(State { current, jobs, arriving, metrics, max_body_bytes: opts.max_body_bytes });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.http_threads.max(1))
        .thread_name("starling-http")
        .enable_all()
        .build()
        .map_err(ServeError::Start)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Start)?;
        http::serve(listener, move |req| handle(state.clone(), req)).await;
        Ok(())
    })
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Reply {
    let start = Instant::now();
    let reply = route(&state, req).await;
    state.metrics.answered(reply.status(), start.elapsed());
    reply
}

async fn route(state: &State, req: Request<Incoming>) -> Reply {
    let allowed = match req.uri().path() {
        "/predict" if req.method() == Method::POST => return predict(state, req).await,
        "/metrics" if req.method() == Method::GET => {
            return http::reply(StatusCode::OK, crate::telemetry::CONTENT_TYPE, state.metrics.registry.render())
        }
        "/healthz" if req.method() == Method::GET => {
            let m = state.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let body = serde_json::json!({
                "status": "ok",
                "model_version": m.version,
                "model": m.source.display().to_string(),
            });
            return http::reply(StatusCode::OK, "application/json", body.to_string());
        }
        "/predict" => "POST",
        "/metrics" | "/healthz" => "GET",
        other => {
            let message = format!("no endpoint {other}: there are POST /predict, GET /metrics and GET /healthz");
            return http::error(StatusCode::NOT_FOUND, &message);
        }
    };
    let mut r = http::error(StatusCode::METHOD_NOT_ALLOWED, &format!("{} takes {allowed}", req.uri().path()));
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allowed));
    r
}

/// How a request's body holds its rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Lines,
}

fn body_kind(req: &Request<Incoming>) -> Result<Option<BodyKind>, Refusal> {
    let Some(ct) = req.headers().get(CONTENT_TYPE) else { return Ok(None) };
    let ct = ct.to_str().unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Some(BodyKind::Json)),
        "text/plain" | "text/csv" | "text/tab-separated-values" => Ok(Some(BodyKind::Lines)),
        _ => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {ct:?}: send rows as application/json ({{\"rows\": [...]}}) or as text/plain lines of the model's input format"
            ),
        )),
    }
}

async fn predict(state: &State, req: Request<Incoming>) -> Reply {
    let kind = match body_kind(&req) {
        Ok(k) => k,
        Err(refusal) => return refusal.reply(),
    };
    state.arriving.fetch_add(1, Ordering::AcqRel);
    let read = read_rows(state, req, kind).await;
    // Before the job is queued: the batcher must not wait for a request it already has.
    state.arriving.fetch_sub(1, Ordering::AcqRel);
    let (model, rows) = match read {
        Ok(x) => x,
        Err(refusal) => return refusal.reply(),
    };
    let n = rows.len();
    let version = model.version;
    let (reply, answer) = tokio::sync::oneshot::channel();
    match state.jobs.try_send(batcher::Job { model, rows, reply }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return http::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded: too many requests are waiting; retry later",
            )
        }
        Err(TrySendError::Disconnected(_)) => {
            return http::error(StatusCode::SERVICE_UNAVAILABLE, "the scoring thread has stopped")
        }
    }
    let Ok(predictions) = answer.await else {
        return http::error(StatusCode::INTERNAL_SERVER_ERROR, "the scoring thread stopped before answering");
    };
    state.metrics.rows.add(n as u64);
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        model_version: u64,
        predictions: &'a [f32],
    }
    let body = serde_json::to_vec(&Answer { model_version: version, predictions: &predictions })
        .expect("numbers serialize to JSON");
    http::reply(StatusCode::OK, "application/json", body)
}

/// The request's rows, read for the model served now.
async fn read_rows(
    state: &State,
    req: Request<Incoming>,
    kind: Option<BodyKind>,
) -> Result<(Arc<Loaded>, Vec<starling_core::Example>), Refusal> {
    let body = http::body(req, state.max_body_bytes).await?;
    let kind = kind.unwrap_or_else(|| {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            BodyKind::Json
        } else {
            BodyKind::Lines
        }
    });
    let model = state.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut reader = model.rows.clone();
    let mut rows = Vec::new();
    let read = match kind {
        BodyKind::Json => reader.read_json(&body, &mut rows),
        BodyKind::Lines => reader.read_lines(&body, &mut rows),
    };
    if let Err(e) = read {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, e.0));
    }
    if rows.is_empty() {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "the request holds no rows"));
    }
    Ok((model, rows))
}

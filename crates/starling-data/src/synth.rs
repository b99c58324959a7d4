//! Deterministic synthetic Criteo-like click data (`starling gen`), a Rust port of the idea of
//! `gen_ctr.py` with the same parameters, so figures measured on either are comparable.
//!
//! Each row has a label, 13 integer count columns I1..I13 (lognormal-ish, some missing) and 26
//! categorical columns C1..C26 (8-hex-digit tokens; per-field vocabularies of 10..1e6 values drawn
//! from a per-field Zipf law with exponent in [1.05, 1.35]; some missing). The label is
//! Bernoulli(sigmoid(z)) under a hidden true model
//!
//! ```text
//! z = -1.25 + Σ_f a_f (log1p(I_f) - μ_f) + Σ_c s_c W[h(c, v_c)]
//!           + 0.08 Σ_{i<j ∈ S} <V[h(i, v_i)], V[h(j, v_j)]>        (rank 4)
//! ```
//!
//! where `S` is 12 categorical fields spanning C1..C13 (VW namespace `a`) and C14..C26 (namespace
//! `b`): a factorization machine (or VW `-q ab` / `--lrq ab8`) can learn the pairwise part, plain
//! logistic regression cannot, so FM beats LR by a clear AUC margin.
//!
//! Everything derives from `seed`: the same configuration gives byte-identical files. The train
//! and test rows come from the same process (independent streams). Rows are streamed (memory is
//! bounded by the test rows kept for the oracle AUC, 12 bytes each, at most [`AUC_MAX_ROWS`]).
//! Files are written under a temporary name in the output directory and renamed when complete;
//! `meta.json` is written last.

mod format;
mod model;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use starling_core::hash::mix64;
use starling_core::metrics::{auc, log_loss};
use starling_core::rng::Rng;

pub use model::{INTER_FIELDS, N_CAT, N_INT};

/// At most this many test rows are kept for the oracle AUC (the logloss uses all of them).
pub const AUC_MAX_ROWS: u64 = 20_000_000;

/// A text format the generator writes (the formats Starling's readers parse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthFormat {
    /// Criteo TSV: `label \t I1..I13 \t C1..C26`, missing = empty.
    Criteo,
    /// LibSVM: `label id:value ...`, ascending hashed ids.
    Libsvm,
    /// libFFM: `label field:id:value ...`, field = column 0..38.
    Libffm,
    /// Vowpal Wabbit text: `1 |i I1:.. |a c1=.. |b c14=..`, label -1/1.
    Vw,
    /// CSV with a header: `Label,I1..I13,C1..C26`.
    Csv,
}

impl SynthFormat {
    /// Every format, in the order files are listed.
    pub const ALL: [SynthFormat; 5] =
        [SynthFormat::Criteo, SynthFormat::Libsvm, SynthFormat::Libffm, SynthFormat::Vw, SynthFormat::Csv];

    /// File extension: `train.<ext>`, `test.<ext>`.
    pub fn ext(self) -> &'static str {
        match self {
            SynthFormat::Criteo => "tsv",
            SynthFormat::Libsvm => "libsvm",
            SynthFormat::Libffm => "ffm",
            SynthFormat::Vw => "vw",
            SynthFormat::Csv => "csv",
        }
    }

    /// Canonical name (what `FromStr` accepts first).
    pub fn name(self) -> &'static str {
        match self {
            SynthFormat::Criteo => "criteo",
            SynthFormat::Libsvm => "libsvm",
            SynthFormat::Libffm => "libffm",
            SynthFormat::Vw => "vw",
            SynthFormat::Csv => "csv",
        }
    }
}

impl fmt::Display for SynthFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SynthFormat {
    type Err = SynthError;

    fn from_str(s: &str) -> Result<Self, SynthError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "criteo" | "tsv" => Ok(SynthFormat::Criteo),
            "libsvm" => Ok(SynthFormat::Libsvm),
            "libffm" | "ffm" => Ok(SynthFormat::Libffm),
            "vw" => Ok(SynthFormat::Vw),
            "csv" => Ok(SynthFormat::Csv),
            _ => Err(SynthError::UnknownFormat(s.to_string())),
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Rows of `train.<ext>`.
    pub train_rows: u64,
    /// Rows of `test.<ext>`.
    pub test_rows: u64,
    /// Everything (hidden model, rows) derives from it.
    pub seed: u64,
    /// LibSVM/libFFM categorical ids are `14 + hash mod (2^hash_bits - 14)`.
    pub hash_bits: u32,
    /// Formats to write (each as a train and a test file); duplicates are ignored.
    pub formats: Vec<SynthFormat>,
    /// Scale of a hidden non-linear term (the softened sign of a sum over four fields) that FM
    /// cannot represent and a deep model can learn; 0 leaves it out.
    pub nonlinear: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            train_rows: 1_000_000,
            test_rows: 200_000,
            seed: 42,
            hash_bits: 24,
            formats: vec![SynthFormat::Criteo],
            nonlinear: 0.0,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthReport {
    pub train_rows: u64,
    pub test_rows: u64,
    /// Share of positive labels.
    pub train_pos_rate: f64,
    pub test_pos_rate: f64,
    /// Test logloss of the true probabilities: the floor no learner beats (NaN without test rows).
    pub oracle_logloss: f64,
    /// Test AUC of the true probabilities (NaN when a class is absent).
    pub oracle_auc: f64,
    /// Test AUC of the linear part of the true model alone (no pairwise term): roughly the
    /// ceiling of a linear learner; the gap to `oracle_auc` is what FM can gain over LR.
    pub oracle_linear_auc: f64,
    /// Test logloss of predicting the test positive rate for every row.
    pub constant_logloss: f64,
    /// Files written, data files first (train, test per format), then `meta.json`.
    pub files: Vec<PathBuf>,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// An I/O error on `path` (directory creation, write, rename; e.g. disk full).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An unknown format name.
    #[error("unknown data format `{0}`: expected one of criteo (or tsv), libsvm, libffm (or ffm), vw, csv")]
    UnknownFormat(String),
    /// A configuration that cannot be generated.
    #[error("invalid synthetic data config: {0}")]
    Config(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SynthError + 'a {
    move |source| SynthError::Io { op, path: path.to_path_buf(), source }
}

/// One output file being written under a temporary name.
struct Sink {
    fmt: SynthFormat,
    tmp: PathBuf,
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
}

const FLUSH_AT: usize = 1 << 20;

impl Sink {
    fn create(dir: &Path, split: &str, fmt: SynthFormat) -> Result<Sink, SynthError> {
        let name = format!("{split}.{}", fmt.ext());
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
        if fmt == SynthFormat::Csv {
            buf.extend_from_slice(&format::csv_header());
        }
        Ok(Sink { fmt, tmp, path, file: Some(file), buf })
    }

    #[inline]
    fn maybe_flush(&mut self) -> Result<(), SynthError> {
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SynthError> {
        let file = self.file.as_mut().expect("sink is open");
        file.write_all(&self.buf).map_err(io_err("write", &self.tmp))?;
        self.buf.clear();
        Ok(())
    }

    /// Flushes, closes and renames to the final name.
    fn finish(mut self) -> Result<PathBuf, SynthError> {
        self.flush()?;
        // surface deferred write errors (NFS, quota) before the rename; on error, Drop removes tmp
        self.file.as_ref().expect("sink is open").sync_data().map_err(io_err("sync", &self.tmp))?;
        fs::rename(&self.tmp, &self.path).map_err(io_err("rename", &self.path))?;
        self.file = None;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // not finished: remove the partial temporary file
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Seed of the row stream of a split (1 = train, 2 = test).
fn split_rng(seed: u64, split: u64) -> Rng {
    Rng::new(mix64(seed ^ mix64(split.wrapping_mul(0xA076_1D64_78BD_642F))))
}

/// Statistics of one split.
#[derive(Default)]
struct SplitStats {
    rows: u64,
    pos: u64,
    logloss_sum: f64,
    z: Vec<f32>,
    zlin: Vec<f32>,
    y: Vec<f32>,
}

/// Writes `train.<ext>` and `test.<ext>` for each format of `cfg` and `meta.json` into `out_dir`
/// (created if missing). `progress` is called now and then with the rows written so far (train
/// and test together) and once at the end.
pub fn generate(cfg: &SynthConfig, out_dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<SynthReport, SynthError> {
    if !(5..=48).contains(&cfg.hash_bits) {
        return Err(SynthError::Config(format!("hash_bits must be in 5..=48, got {}", cfg.hash_bits)));
    }
    if !(cfg.nonlinear.is_finite() && (0.0..=10.0).contains(&cfg.nonlinear)) {
        return Err(SynthError::Config(format!("nonlinear must be between 0 and 10, got {}", cfg.nonlinear)));
    }
    let mut formats: Vec<SynthFormat> = Vec::new();
    for &f in &cfg.formats {
        if !formats.contains(&f) {
            formats.push(f);
        }
    }
    fs::create_dir_all(out_dir).map_err(io_err("create directory", out_dir))?;
    let spec = model::Spec::new(cfg.seed);
    let mut lw = format::LineWriter::new(cfg.hash_bits);
    let mut row = model::Row::default();
    let mut cache = model::WeightCache::default();
    let mut files = Vec::new();
    let mut done = 0u64;
    let mut stats = [SplitStats::default(), SplitStats::default()];
    for (si, (split, n)) in [("train", cfg.train_rows), ("test", cfg.test_rows)].into_iter().enumerate() {
        let mut sinks = formats.iter().map(|&f| Sink::create(out_dir, split, f)).collect::<Result<Vec<_>, _>>()?;
        let mut rng = split_rng(cfg.seed, si as u64 + 1);
        let st = &mut stats[si];
        let keep = if si == 1 { n.min(AUC_MAX_ROWS) as usize } else { 0 };
        st.z.reserve_exact(keep);
        st.zlin.reserve_exact(keep);
        st.y.reserve_exact(keep);
        for i in 0..n {
            spec.sample_row(&mut rng, &mut row, &mut cache, cfg.nonlinear);
            let y = if row.label { 1.0f32 } else { 0.0 };
            st.rows += 1;
            st.pos += u64::from(row.label);
            st.logloss_sum += log_loss(row.p, y);
            if (i as usize) < keep {
                st.z.push(row.z as f32);
                st.zlin.push(row.zlin as f32);
                st.y.push(y);
            }
            for s in sinks.iter_mut() {
                lw.write(s.fmt, &row, &mut s.buf);
                s.maybe_flush()?;
            }
            done += 1;
            if done & 0xFFFF == 0 {
                progress(done);
            }
        }
        for s in sinks {
            files.push(s.finish()?);
        }
    }
    let [tr, te] = stats;
    let rate = |s: &SplitStats| {
        if s.rows > 0 {
            s.pos as f64 / s.rows as f64
        } else {
            f64::NAN
        }
    };
    let test_rate = rate(&te);
    let constant_logloss = if te.rows == 0 {
        f64::NAN
    } else if te.pos == 0 || te.pos == te.rows {
        0.0
    } else {
        -(test_rate * test_rate.ln() + (1.0 - test_rate) * (1.0 - test_rate).ln())
    };
    let mut report = SynthReport {
        train_rows: tr.rows,
        test_rows: te.rows,
        train_pos_rate: rate(&tr),
        test_pos_rate: test_rate,
        oracle_logloss: if te.rows > 0 { te.logloss_sum / te.rows as f64 } else { f64::NAN },
        oracle_auc: auc(&te.z, &te.y).unwrap_or(f64::NAN),
        oracle_linear_auc: auc(&te.zlin, &te.y).unwrap_or(f64::NAN),
        constant_logloss,
        files,
    };
    let meta_path = out_dir.join("meta.json");
    let meta_tmp = out_dir.join(format!(".meta.json.tmp-{}", std::process::id()));
    let meta = meta_json(cfg, &formats, &spec, &report);
    let write_meta = || -> Result<(), SynthError> {
        let mut f = File::create(&meta_tmp).map_err(io_err("create", &meta_tmp))?;
        f.write_all(meta.as_bytes()).map_err(io_err("write", &meta_tmp))?;
        f.sync_data().map_err(io_err("sync", &meta_tmp))?;
        drop(f);
        fs::rename(&meta_tmp, &meta_path).map_err(io_err("rename", &meta_tmp))
    };
    if let Err(e) = write_meta() {
        let _ = fs::remove_file(&meta_tmp);
        return Err(e);
    }
    report.files.push(meta_path);
    progress(done);
    Ok(report)
}

/// Tiny JSON writer helpers (no serde_json in this crate).
fn jnum(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".to_string()
    }
}

fn jarr(xs: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", xs.into_iter().collect::<Vec<_>>().join(", "))
}

fn round4(x: f64) -> String {
    jnum((x * 1e4).round() / 1e4)
}

fn meta_json(cfg: &SynthConfig, formats: &[SynthFormat], spec: &model::Spec, r: &SynthReport) -> String {
    let fmts = jarr(formats.iter().map(|f| format!("\"{}\"", f.name())));
    let spec_json = [
        ("vocab", jarr((0..N_CAT).map(|f| model::vocab(f).to_string()))),
        ("zipf_s", jarr(spec.zipf_s.iter().map(|&x| round4(x)))),
        ("cat_missing", jarr(spec.cat_missing.iter().map(|&x| jnum(x)))),
        ("cat_scale", jarr(spec.cat_scale.iter().map(|&x| round4(x)))),
        ("int_mu", jarr(spec.int_mu.iter().map(|&x| round4(x)))),
        ("int_sigma", jarr(spec.int_sigma.iter().map(|&x| round4(x)))),
        ("int_missing", jarr(spec.int_missing.iter().map(|&x| jnum(x)))),
        ("int_w", jarr(spec.int_w.iter().map(|&x| round4(x)))),
        ("inter_fields", jarr(INTER_FIELDS.iter().map(|x| x.to_string()))),
        ("latent_k", model::LATENT_K.to_string()),
        ("inter_gain", jnum(model::INTER_GAIN)),
        ("bias", jnum(model::BIAS)),
        ("hidden_table_bits", model::HIDDEN_TABLE_BITS.to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("  \"{k}\": {v}"))
    .collect::<Vec<_>>()
    .join(",\n");
    let fields = [
        ("generator", "\"starling gen (synthetic Criteo-like CTR, port of gen_ctr.py)\"".to_string()),
        ("seed", cfg.seed.to_string()),
        ("n_train", r.train_rows.to_string()),
        ("n_test", r.test_rows.to_string()),
        ("hash_bits", cfg.hash_bits.to_string()),
        ("formats", fmts),
        ("train_pos_rate", jnum(r.train_pos_rate)),
        ("test_pos_rate", jnum(r.test_pos_rate)),
        ("oracle_test_logloss", jnum(r.oracle_logloss)),
        ("oracle_test_auc", jnum(r.oracle_auc)),
        ("oracle_linear_part_auc", jnum(r.oracle_linear_auc)),
        ("constant_pred_logloss", jnum(r.constant_logloss)),
        ("auc_rows", r.test_rows.min(AUC_MAX_ROWS).to_string()),
        ("spec", format!("{{\n{spec_json}\n }}")),
    ];
    let body = fields.iter().map(|(k, v)| format!(" \"{k}\": {v}")).collect::<Vec<_>>().join(",\n");
    format!("{{\n{body}\n}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(train: u64, test: u64, seed: u64, formats: &[SynthFormat]) -> SynthConfig {
        SynthConfig {
            train_rows: train,
            test_rows: test,
            seed,
            hash_bits: 24,
            formats: formats.to_vec(),
            nonlinear: 0.0,
        }
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn format_names_parse() {
        for f in SynthFormat::ALL {
            assert_eq!(f.name().parse::<SynthFormat>().unwrap(), f);
        }
        assert_eq!("tsv".parse::<SynthFormat>().unwrap(), SynthFormat::Criteo);
        assert_eq!("FFM".parse::<SynthFormat>().unwrap(), SynthFormat::Libffm);
        let e = "parquet".parse::<SynthFormat>().unwrap_err().to_string();
        assert!(e.contains("parquet") && e.contains("libsvm") && e.contains("criteo"), "{e}");
        assert_eq!(SynthFormat::Libffm.ext(), "ffm");
        assert_eq!(SynthConfig::default().formats, vec![SynthFormat::Criteo]);
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let all = SynthFormat::ALL;
        let ra = generate(&cfg(500, 200, 7, &all), a.path(), &mut |_| {}).unwrap();
        let rb = generate(&cfg(500, 200, 7, &all), b.path(), &mut |_| {}).unwrap();
        generate(&cfg(500, 200, 8, &all), c.path(), &mut |_| {}).unwrap();
        assert_eq!(ra.files.len(), 11);
        for f in &ra.files {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert_eq!(read(a.path(), name), read(b.path(), name), "{name} differs for the same seed");
            if name != "meta.json" {
                assert_ne!(read(a.path(), name), read(c.path(), name), "{name} same for different seeds");
            }
        }
        assert_eq!(ra.oracle_auc, rb.oracle_auc);
        // the rows do not depend on which formats are written
        let d = tempfile::tempdir().unwrap();
        generate(&cfg(500, 200, 7, &[SynthFormat::Vw]), d.path(), &mut |_| {}).unwrap();
        assert_eq!(read(a.path(), "train.vw"), read(d.path(), "train.vw"));
    }

    #[test]
    fn layouts_of_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = 0;
        let r = generate(&cfg(300, 100, 1, &SynthFormat::ALL), dir.path(), &mut |n| seen = n).unwrap();
        assert_eq!(seen, 400);
        let lines = |name: &str| -> Vec<String> {
            String::from_utf8(read(dir.path(), name)).unwrap().lines().map(str::to_string).collect()
        };
        let is_hex8 = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let bits = 24;
        for split in ["train", "test"] {
            let n = if split == "train" { 300 } else { 100 };
            let tsv = lines(&format!("{split}.tsv"));
            let csv = lines(&format!("{split}.csv"));
            let svm = lines(&format!("{split}.libsvm"));
            let ffm = lines(&format!("{split}.ffm"));
            let vw = lines(&format!("{split}.vw"));
            assert_eq!(tsv.len(), n);
            assert_eq!(csv.len(), n + 1);
            assert_eq!(csv[0].split(',').count(), 40);
            assert!(csv[0].starts_with("Label,I1,I2,") && csv[0].ends_with(",C25,C26"));
            assert_eq!((svm.len(), ffm.len(), vw.len()), (n, n, n));
            for i in 0..n {
                let cols: Vec<&str> = tsv[i].split('\t').collect();
                assert_eq!(cols.len(), 40, "{}", tsv[i]);
                assert_eq!(csv[i + 1], tsv[i].replace('\t', ","));
                let label = cols[0];
                assert!(label == "0" || label == "1");
                for c in &cols[1..14] {
                    assert!(c.is_empty() || c.parse::<u64>().is_ok(), "int column {c:?}");
                }
                for c in &cols[14..] {
                    assert!(c.is_empty() || is_hex8(c), "categorical column {c:?}");
                }
                // LibSVM: label, ascending ids, ints at 1..13 = log1p(I)
                let toks: Vec<&str> = svm[i].split(' ').collect();
                assert_eq!(toks[0], label);
                let mut prev = 0u64;
                let mut cats = 0.0;
                for t in &toks[1..] {
                    let (id, v) = t.split_once(':').unwrap();
                    let (id, v): (u64, f64) = (id.parse().unwrap(), v.parse().unwrap());
                    assert!(id > prev && id < 1 << bits, "{}", svm[i]);
                    prev = id;
                    if id <= 13 {
                        let iv: f64 = cols[id as usize].parse().unwrap();
                        assert!((v - iv.ln_1p()).abs() <= 1e-5 * (1.0 + v), "{v} vs log1p({iv})");
                    } else {
                        cats += v;
                    }
                }
                let n_ints = cols[1..14].iter().filter(|c| !c.is_empty()).count();
                let n_cats = cols[14..].iter().filter(|c| !c.is_empty()).count();
                assert_eq!(
                    toks[1..].iter().filter(|t| t.split(':').next().unwrap().parse::<u64>().unwrap() <= 13).count(),
                    n_ints
                );
                assert_eq!(cats as usize, n_cats);
                // libFFM: same features, field = column index
                let ft: Vec<&str> = ffm[i].split(' ').collect();
                assert_eq!(ft[0], label);
                assert_eq!(ft.len() - 1, n_ints + n_cats);
                let mut ids: Vec<(u64, String)> = Vec::new();
                for t in &ft[1..] {
                    let p: Vec<&str> = t.split(':').collect();
                    assert_eq!(p.len(), 3);
                    let field: usize = p[0].parse().unwrap();
                    assert!(field < 39 && !cols[field + 1].is_empty());
                    ids.push((p[1].parse().unwrap(), p[2].to_string()));
                }
                ids.sort_by_key(|x| x.0);
                let svm_ids: Vec<u64> =
                    toks[1..].iter().map(|t| t.split(':').next().unwrap().parse().unwrap()).collect();
                let mut ffm_ids: Vec<u64> = ids.iter().map(|x| x.0).collect();
                ffm_ids.dedup();
                assert_eq!(svm_ids, ffm_ids);
                // VW: label -1/1, namespaces i, a, b
                let want_label = if label == "1" { "1" } else { "-1" };
                let (head, rest) = vw[i].split_once(" |i ").unwrap();
                assert_eq!(head, want_label);
                let (ints, rest) = rest.split_once(" |a ").unwrap();
                let (a, b) = rest.split_once(" |b ").unwrap();
                let iw: Vec<&str> = ints.split(' ').filter(|s| !s.is_empty()).collect();
                assert_eq!(iw.len(), n_ints);
                for t in iw {
                    let (name, v) = t.split_once(':').unwrap();
                    let f: usize = name.strip_prefix('I').unwrap().parse().unwrap();
                    let iv: f64 = cols[f].parse().unwrap();
                    assert!((v.parse::<f64>().unwrap() - iv.ln_1p()).abs() <= 1e-5 * (1.0 + iv.ln_1p()));
                }
                for (part, lo) in [(a, 1usize), (b, 14)] {
                    for t in part.split(' ').filter(|s| !s.is_empty()) {
                        let (name, tok) = t.split_once('=').unwrap();
                        let f: usize = name.strip_prefix('c').unwrap().parse().unwrap();
                        assert!((lo..lo + 13).contains(&f));
                        assert_eq!(cols[13 + f], tok);
                    }
                }
            }
        }
        let meta = String::from_utf8(read(dir.path(), "meta.json")).unwrap();
        assert!(
            meta.contains("\"seed\": 1") && meta.contains("\"n_train\": 300") && meta.contains("\"oracle_test_auc\"")
        );
        assert!(meta.contains("\"formats\": [\"criteo\", \"libsvm\", \"libffm\", \"vw\", \"csv\"]"));
        assert_eq!(r.files.last().unwrap(), &dir.path().join("meta.json"));
    }

    #[test]
    fn missing_values_occur() {
        let dir = tempfile::tempdir().unwrap();
        generate(&cfg(2000, 0, 3, &[SynthFormat::Criteo]), dir.path(), &mut |_| {}).unwrap();
        let text = String::from_utf8(read(dir.path(), "train.tsv")).unwrap();
        let (mut int_miss, mut cat_miss) = (0, 0);
        for l in text.lines() {
            let cols: Vec<&str> = l.split('\t').collect();
            int_miss += cols[1..14].iter().filter(|c| c.is_empty()).count();
            cat_miss += cols[14..].iter().filter(|c| c.is_empty()).count();
        }
        // categorical: ~ (4*.03 + 4*.44 + .03 + .76) * 2000 ≈ 5300
        assert!((4000..7000).contains(&cat_miss), "{cat_miss}");
        assert!(int_miss > 0);
    }

    #[test]
    fn labels_and_oracle_are_sane_and_pairwise_term_matters() {
        let dir = tempfile::tempdir().unwrap();
        let r = generate(&cfg(5000, 20_000, 42, &[]), dir.path(), &mut |_| {}).unwrap();
        assert_eq!((r.train_rows, r.test_rows), (5000, 20_000));
        assert!((0.15..0.35).contains(&r.train_pos_rate), "{}", r.train_pos_rate);
        assert!((0.15..0.35).contains(&r.test_pos_rate), "{}", r.test_pos_rate);
        assert!(r.oracle_auc > 0.75, "oracle AUC {}", r.oracle_auc);
        assert!(r.oracle_auc - r.oracle_linear_auc > 0.03, "{} vs linear {}", r.oracle_auc, r.oracle_linear_auc);
        assert!(r.oracle_logloss < r.constant_logloss - 0.05, "{} vs {}", r.oracle_logloss, r.constant_logloss);
    }

    #[test]
    fn libsvm_ids_merge_duplicates_and_fit_hash_bits() {
        // 5 bits: 18 buckets for 26 fields, so rows must have collisions merged into value 2, 3..
        let dir = tempfile::tempdir().unwrap();
        let c = SynthConfig { hash_bits: 5, ..cfg(200, 0, 5, &[SynthFormat::Libsvm]) };
        generate(&c, dir.path(), &mut |_| {}).unwrap();
        let text = String::from_utf8(read(dir.path(), "train.libsvm")).unwrap();
        let mut merged = 0;
        for l in text.lines() {
            let mut prev = 0;
            for t in l.split(' ').skip(1) {
                let (id, v) = t.split_once(':').unwrap();
                let id: u64 = id.parse().unwrap();
                assert!(id > prev && id < 32);
                prev = id;
                if id >= 14 && v != "1" {
                    merged += 1;
                }
            }
        }
        assert!(merged > 0);
        assert!(matches!(
            generate(&SynthConfig { hash_bits: 2, ..c }, dir.path(), &mut |_| {}),
            Err(SynthError::Config(_))
        ));
    }

    #[test]
    fn temp_files_renamed_and_failures_leave_no_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/out");
        generate(&cfg(100, 50, 9, &[SynthFormat::Libsvm, SynthFormat::Vw]), &out, &mut |_| {}).unwrap();
        let names: Vec<String> =
            fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with('.')), "temporary file left: {names:?}");

        // a directory squatting on the final name of test.vw: the rename fails, the error names the
        // path, no temporary file is left behind and no meta.json claims success
        let bad = dir.path().join("bad");
        fs::create_dir_all(bad.join("test.vw/occupied")).unwrap();
        let e = generate(&cfg(100, 50, 9, &[SynthFormat::Vw]), &bad, &mut |_| {}).unwrap_err();
        assert!(matches!(e, SynthError::Io { op: "rename", .. }), "{e}");
        assert!(e.to_string().contains("test.vw"), "{e}");
        let names: Vec<String> =
            fs::read_dir(&bad).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(!names.iter().any(|n| n.starts_with('.') || n == "meta.json"), "{names:?}");

        // an output path that is a file
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let e = generate(&cfg(10, 10, 9, &[SynthFormat::Vw]), &file, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("plain"), "{e}");
    }

    /// Throughput and full-size statistics: `SYNTH_BENCH_DIR=/tmp/x SYNTH_BENCH_ROWS=1000000 cargo test
    /// --release -p starling-data --lib synth::tests::bench_generate -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_generate() {
        let dir = PathBuf::from(std::env::var("SYNTH_BENCH_DIR").unwrap_or_else(|_| "/tmp/synth-bench".into()));
        let rows: u64 = std::env::var("SYNTH_BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
        let fmts: Vec<SynthFormat> = std::env::var("SYNTH_BENCH_FORMATS")
            .unwrap_or_else(|_| "vw,libsvm".into())
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let t = std::time::Instant::now();
        let seed: u64 = std::env::var("SYNTH_BENCH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(42);
        let r = generate(&cfg(rows, rows / 5, seed, &fmts), &dir, &mut |_| {}).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let bytes: u64 = r.files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
        println!(
            "{} rows in {fmts:?}: {secs:.2} s, {:.0} rows/s, {:.1} MB/s; {r:?}",
            rows + rows / 5,
            (rows + rows / 5) as f64 / secs,
            bytes as f64 / 1e6 / secs
        );
    }
}

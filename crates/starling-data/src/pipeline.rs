//! The feature pipeline: a config-driven [`RawSink`] that turns what a parser finds into an
//! [`Example`]: hashed keys, field numbers, numeric transforms, crosses, the bias feature, and
//! optional folding into `2^hash_bits` buckets.
//!
//! Features come in field order for LibSVM, libFFM (as written), Criteo and CSV (sorted when a
//! file's columns are in another order), and in line order for VW; crosses follow, then the bias.
//!
//! Field numbering is a function of the config (and, for CSV, the configured column names) only,
//! never of which lines a reader sees, so every thread and worker builds identical examples.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_core::hash::{fold, hash_cross, hash_id, hash_token};
use starling_core::{Example, Feature};

#[cfg(feature = "arrow")]
use crate::arrow::ColumnKind;
use crate::error::DataError;
use crate::format::criteo::criteo_field_names;
use crate::format::csv::{split_line, ColumnRole};
use crate::format::{CriteoParser, CsvParser, LibFfmParser, LibSvmParser, LineError, RawSink, VwParser};
use crate::input::{LineSource, Split};

/// Lines scanned to discover the number of libFFM fields when `num_fields` is not set.
pub const DEFAULT_SCAN_LINES: u64 = 1_000_000;

/// Fields a libFFM input may have: far beyond any field-aware model (FFM keeps `k` floats per
/// key and field), and small enough that a stray huge field id is an error, not an allocation.
pub const MAX_LIBFFM_FIELDS: usize = 1 << 16;

/// Input format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Guess from the first input file: its extension, else its first line.
    #[default]
    Auto,
    /// LibSVM / SVMlight `label idx:val ...`.
    Libsvm,
    /// libFFM `label field:idx:val ...`.
    Libffm,
    /// Criteo TSV: label, 13 integer and 26 categorical columns.
    Criteo,
    /// Vowpal Wabbit text.
    Vw,
    /// CSV with a header line.
    Csv,
    /// Parquet files (Spark-written directories too), columns mapped by `[features.columns]`.
    Parquet,
}

impl Format {
    /// Lowercase name, as in the config.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Libsvm => "libsvm",
            Format::Libffm => "libffm",
            Format::Criteo => "criteo",
            Format::Vw => "vw",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// Guess by extension, ignoring a trailing `.gz`: `.libsvm`/`.svm` → LibSVM, `.ffm`/`.libffm`
    /// → libFFM, `.tsv` → Criteo, `.vw` → VW, `.csv` → CSV, `.parquet` → Parquet. `None` otherwise
    /// (`.txt` is ambiguous).
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "libsvm" | "svm" => Some(Format::Libsvm),
            "ffm" | "libffm" => Some(Format::Libffm),
            "tsv" => Some(Format::Criteo),
            "vw" => Some(Format::Vw),
            "csv" => Some(Format::Csv),
            "parquet" | "parq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// Guess from the first non-blank line of `path`: a `|` means VW, 40 tab-separated columns
    /// Criteo, `label f:i:v ...` libFFM, `label i:v ...` LibSVM, a `,` CSV; a file starting with
    /// `PAR1` is Parquet (Spark names its files `part-*.snappy.parquet`, but not always).
    pub fn sniff(path: &Path) -> Result<Option<Format>, DataError> {
        let mut head = Vec::with_capacity(4096);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(path).map_err(|e| DataError::io(path, e))?, 4096),
            &mut head,
        )
        .map_err(|e| DataError::io(path, e))?;
        if head.starts_with(b"PAR1") {
            return Ok(Some(Format::Parquet));
        }
        // A gzip stream is binary but holds text, which the line source decompresses.
        if let (false, Some(at)) = (head.starts_with(&[0x1f, 0x8b]), crate::format::binary_at(&head)) {
            return Err(DataError::Config(format!(
                "{}: not a text file (a NUL byte at offset {at}), nor Parquet; the text formats are libsvm, libffm, criteo, vw and csv",
                path.display()
            )));
        }
        let split = Split::whole(path)?;
        let mut src = LineSource::open(&split, false)?;
        let Some(line) = src.next_line()? else { return Ok(None) };
        Ok(sniff_line(line))
    }

    /// [`Format::from_path`], else [`Format::sniff`], else an error naming the file.
    pub fn detect(path: &Path) -> Result<Format, DataError> {
        if let Some(f) = Format::from_path(path) {
            return Ok(f);
        }
        Format::sniff(path)?.ok_or_else(|| {
            DataError::Config(format!(
                "{}: cannot tell the input format; set format = libsvm|libffm|criteo|vw|csv|parquet",
                path.display()
            ))
        })
    }
}

/// Format guess from one line.
fn sniff_line(line: &[u8]) -> Option<Format> {
    if line.contains(&b'|') {
        return Some(Format::Vw);
    }
    if line.iter().filter(|&&b| b == b'\t').count() == 39 {
        return Some(Format::Criteo);
    }
    let text = String::from_utf8_lossy(line);
    let mut toks = text.split_ascii_whitespace();
    let first = toks.next()?;
    if first.parse::<f32>().is_ok() {
        let colons: Vec<usize> = toks.map(|t| t.matches(':').count()).collect();
        if !colons.is_empty() && colons.iter().all(|&c| c == 2) {
            return Some(Format::Libffm);
        }
        if colons.iter().all(|&c| c <= 1) && !first.contains(',') {
            return Some(Format::Libsvm);
        }
    }
    if line.contains(&b',') {
        return Some(Format::Csv);
    }
    None
}

/// How numeric columns (Criteo integers, CSV numeric columns) become features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NumericTransform {
    /// One-hot bucket, as the Criteo-winning FFM entry: `x > 2` → bucket `floor(ln(x)^2)`, else
    /// `x` itself; the key is the hashed (field, bucket), the value 1.
    #[default]
    LogBucket,
    /// One key per field with value `ln(1 + max(x, 0))`.
    Log1p,
    /// One key per field with value `x`.
    Raw,
}

/// How the columns of CSV and Parquet input are used (`[features.columns]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ColumnConfig {
    /// Cell delimiter of CSV (an ASCII character; `"\t"` for TSV).
    pub delimiter: char,
    /// Label column name: matched exactly, else case-insensitively if unambiguous.
    pub label: String,
    /// Optional importance-weight column.
    pub weight: Option<String>,
    /// Numeric columns, in field order.
    pub numeric: Vec<String>,
    /// Categorical columns, in field order after the numeric ones.
    pub categorical: Vec<String>,
    /// Parquet: Spark ML vector or id-array columns, in field order after the categorical ones;
    /// each is one field.
    pub vectors: Vec<String>,
    /// Columns not used. Only matters when `numeric`, `categorical` and `vectors` are all empty:
    /// then every other column but label and weight is a feature, in column order (CSV:
    /// categorical; Parquet: by its type, see docs/input-formats.md).
    pub ignore: Vec<String>,
}

impl Default for ColumnConfig {
    fn default() -> Self {
        ColumnConfig {
            delimiter: ',',
            label: "label".into(),
            weight: None,
            numeric: Vec::new(),
            categorical: Vec::new(),
            vectors: Vec::new(),
            ignore: Vec::new(),
        }
    }
}

impl ColumnConfig {
    /// The Criteo Kaggle CSV layout `Id,Label,I1..I13,C1..C26` (fields numbered as Criteo TSV).
    pub fn criteo() -> Self {
        ColumnConfig {
            label: "Label".into(),
            numeric: (1..=13).map(|i| format!("I{i}")).collect(),
            categorical: (1..=26).map(|i| format!("C{i}")).collect(),
            ignore: vec!["Id".into()],
            ..ColumnConfig::default()
        }
    }
}

/// Everything that decides how input lines become examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Input format; `auto` guesses from the first file's extension, then its first bytes.
    pub format: Format,
    /// Keys are folded into `2^hash_bits` rows of a direct-indexed table; 0 keeps full 64-bit
    /// keys in a hash table (no collisions, more memory per row).
    pub hash_bits: u32,
    /// Add a bias feature (constant key, value 1) in its own, last field.
    pub bias: bool,
    /// Pairs of field names to cross, like VW `-q`: `[["C1", "C14"]]`; each cross is a new field.
    pub crosses: Vec<[String; 2]>,
    /// Transform of numeric columns (Criteo I1-I13, CSV numeric ones).
    pub numeric: NumericTransform,
    /// Column mapping of CSV and Parquet input (`[features.columns]`; `[features.csv]` is read too).
    #[serde(alias = "csv")]
    pub columns: ColumnConfig,
    /// VW: the namespace first letters that become fields 0..n, in order; empty gives one field
    /// per byte value (256, fine for LR and FM; set it for FFM).
    pub namespaces: String,
    /// libFFM: number of fields; unset scans the first 1M lines of the input.
    pub num_fields: Option<usize>,
    /// Map labels to 0/1 (`> 0` → 1, else 0); set by the trainer, on for logistic loss.
    pub binary_labels: bool,
    /// Malformed lines to skip and report; 0 stops at the first, naming file, line and column.
    pub max_bad_lines: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            format: Format::Auto,
            hash_bits: 24,
            bias: true,
            crosses: Vec::new(),
            numeric: NumericTransform::LogBucket,
            columns: ColumnConfig::default(),
            namespaces: String::new(),
            num_fields: None,
            binary_labels: false,
            max_bad_lines: 0,
        }
    }
}

/// The line parser of the configured format.
#[derive(Clone, Debug)]
enum Parser {
    LibSvm(LibSvmParser),
    LibFfm(LibFfmParser),
    Criteo(CriteoParser),
    Vw(VwParser),
    Csv(CsvParser),
    /// Columnar input (Parquet, Arrow) is fed through [`Pipeline::begin`], not parsed by lines.
    Columnar,
}

/// Hashing state shared by every line; the sink borrows it.
#[derive(Clone, Debug)]
struct Core {
    hash_bits: u32,
    numeric: NumericTransform,
    binary_labels: bool,
    /// (field a, field b, cross field).
    crosses: Vec<(u32, u32, u32)>,
    bias_field: Option<u32>,
    /// CSV whose header has the feature columns out of field order: sort features by field.
    sort_by_field: bool,
    scratch_a: Vec<u32>,
    scratch_b: Vec<u32>,
}

/// Key of the bias feature (the same in every config and format).
pub fn bias_key() -> u64 {
    hash_token(u32::MAX, b"__starling_bias__")
}

/// Key of a whole numeric field under [`NumericTransform::Log1p`] and [`NumericTransform::Raw`].
pub fn numeric_field_key(field: u32) -> u64 {
    hash_token(field, b"")
}

/// The id a numeric value gets under [`NumericTransform::LogBucket`].
///
/// `x > 2` → `floor(ln(x)^2)` tagged with bit 63 (so a bucket never shares an id with a small
/// raw value, unlike the original Criteo code where `3` and `1` both became `1`); an integral
/// `x <= 2` → `x` as a two's-complement integer; a fractional `x <= 2` → its bit pattern tagged
/// with bit 62.
#[inline]
pub fn log_bucket_id(x: f32) -> u64 {
    if x > 2.0 {
        let l = x.ln();
        (1u64 << 63) | ((l * l).floor() as u64)
    } else if x == x.trunc() && x > -1e9 {
        (x as i64) as u64
    } else {
        (1u64 << 62) | u64::from(x.to_bits())
    }
}

/// Turns one example's raw features into `Feature`s; get one from [`Pipeline::begin`], feed it,
/// then call [`ExampleSink::finish`].
pub struct ExampleSink<'a> {
    core: &'a mut Core,
    ex: &'a mut Example,
}

impl RawSink for ExampleSink<'_> {
    #[inline]
    fn label(&mut self, label: f32) {
        self.ex.label = if self.core.binary_labels {
            if label > 0.0 {
                1.0
            } else {
                0.0
            }
        } else {
            label
        };
    }

    #[inline]
    fn weight(&mut self, w: f32) {
        self.ex.weight = w;
    }

    #[inline]
    fn id(&mut self, field: u32, id: u64, value: f32) {
        self.ex.features.push(Feature { key: hash_id(field, id), value, field });
    }

    #[inline]
    fn token(&mut self, field: u32, token: &[u8], value: f32) {
        self.ex.features.push(Feature { key: hash_token(field, token), value, field });
    }

    #[inline]
    fn number(&mut self, field: u32, x: f32) {
        let (key, value) = match self.core.numeric {
            NumericTransform::LogBucket => (hash_id(field, log_bucket_id(x)), 1.0),
            NumericTransform::Log1p => (numeric_field_key(field), x.max(0.0).ln_1p()),
            NumericTransform::Raw => (numeric_field_key(field), x),
        };
        self.ex.features.push(Feature { key, value, field });
    }
}

impl ExampleSink<'_> {
    /// Adds crosses and the bias feature, then folds every key to `hash_bits`.
    pub fn finish(self) {
        let core = self.core;
        let feats = &mut self.ex.features;
        let n_base = feats.len();
        if core.sort_by_field {
            // Insertion sort (stable, no allocation): lines have few features.
            for i in 1..n_base {
                let mut j = i;
                while j > 0 && feats[j - 1].field > feats[j].field {
                    feats.swap(j - 1, j);
                    j -= 1;
                }
            }
        }
        for &(fa, fb, fc) in &core.crosses {
            core.scratch_a.clear();
            core.scratch_b.clear();
            for (i, f) in feats[..n_base].iter().enumerate() {
                if f.field == fa {
                    core.scratch_a.push(i as u32);
                }
                if f.field == fb {
                    core.scratch_b.push(i as u32);
                }
            }
            if fa == fb {
                // A field crossed with itself: each unordered pair of distinct features once.
                let a = &core.scratch_a;
                for x in 0..a.len() {
                    for y in x + 1..a.len() {
                        let (p, q) = (feats[a[x] as usize], feats[a[y] as usize]);
                        feats.push(Feature { key: hash_cross(p.key, q.key), value: p.value * q.value, field: fc });
                    }
                }
            } else {
                for &i in &core.scratch_a {
                    for &j in &core.scratch_b {
                        let (p, q) = (feats[i as usize], feats[j as usize]);
                        feats.push(Feature { key: hash_cross(p.key, q.key), value: p.value * q.value, field: fc });
                    }
                }
            }
        }
        if let Some(bf) = core.bias_field {
            feats.push(Feature { key: bias_key(), value: 1.0, field: bf });
        }
        if core.hash_bits != 0 {
            let bits = core.hash_bits;
            for f in feats.iter_mut() {
                f.key = fold(f.key, bits);
            }
        }
    }
}

/// A configured feature pipeline: parses lines of one format into examples.
///
/// Cheap to clone; give each reader thread its own clone.
#[derive(Clone, Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    parser: Parser,
    core: Core,
    /// Names of the fields from the input (before crosses and bias).
    base_names: Vec<String>,
    /// CSV: (column name, numeric?) of each base field, in field order.
    csv_fields: Vec<(String, bool)>,
    /// CSV: the header the column roles were computed from.
    csv_header: Option<Vec<u8>>,
    /// Columnar input: the base fields (column name and kind) every file is mapped to.
    #[cfg(feature = "arrow")]
    columnar: Option<std::sync::Arc<Vec<(String, ColumnKind)>>>,
    /// Columnar input: whether a label column must be present (not for data to predict).
    labels_required: bool,
}

impl Pipeline {
    /// A pipeline for `config`, whose format must be set (not `auto`). CSV needs the header line
    /// of the input; libFFM needs `num_fields` (see [`Pipeline::from_files`] to have both found).
    pub fn new(config: &PipelineConfig, csv_header: Option<&[u8]>) -> Result<Pipeline, DataError> {
        let config = config.clone();
        if config.hash_bits > 64 {
            return Err(DataError::Config(format!("hash_bits = {} is above 64", config.hash_bits)));
        }
        let mut csv_fields = Vec::new();
        let (parser, base_names) = match config.format {
            Format::Auto => {
                return Err(DataError::Config(
                    "format = auto must be resolved from the input files (Pipeline::from_files)".into(),
                ))
            }
            Format::Libsvm => (Parser::LibSvm(LibSvmParser), vec!["0".to_string()]),
            Format::Libffm => {
                let Some(n) = config.num_fields else {
                    return Err(DataError::Config(
                        "libffm needs num_fields (set it, or build the pipeline with Pipeline::from_files)".into(),
                    ));
                };
                if n == 0 || n > MAX_LIBFFM_FIELDS {
                    return Err(DataError::Config(format!(
                        "num_fields = {n} is out of range: libFFM input has 1 to {MAX_LIBFFM_FIELDS} fields"
                    )));
                }
                (Parser::LibFfm(LibFfmParser::new(Some(n as u32))), (0..n).map(|i| i.to_string()).collect())
            }
            Format::Criteo => (Parser::Criteo(CriteoParser), criteo_field_names()),
            Format::Vw => {
                let p = VwParser::new(&config.namespaces).map_err(DataError::Config)?;
                let names = p.field_names();
                (Parser::Vw(p), names)
            }
            Format::Parquet => {
                return Err(DataError::Config(
                    "parquet input needs its columns: build the pipeline with Pipeline::from_files".into(),
                ))
            }
            Format::Csv => {
                let header = csv_header.ok_or_else(|| {
                    DataError::Config("csv needs the header line of the input (Pipeline::from_files reads it)".into())
                })?;
                let delim = csv_delimiter(&config.columns)?;
                let cols = header_names(header, delim).map_err(DataError::Config)?;
                csv_fields = csv_field_list(&config.columns, &cols)?;
                let roles = csv_roles(&config.columns, &csv_fields, &cols).map_err(DataError::Config)?;
                let names = csv_fields.iter().map(|(n, _)| n.clone()).collect();
                (Parser::Csv(CsvParser::new(delim, roles)), names)
            }
        };
        Pipeline::assemble(config, parser, base_names, csv_fields, csv_header)
    }

    /// A pipeline for columnar input (Parquet, Arrow batches) with these base fields, in field
    /// order (see [`crate::arrow::field_list`]); feed examples through [`Pipeline::begin`].
    #[cfg(feature = "arrow")]
    pub fn with_columns(config: &PipelineConfig, fields: Vec<(String, ColumnKind)>) -> Result<Pipeline, DataError> {
        let mut config = config.clone();
        if config.hash_bits > 64 {
            return Err(DataError::Config(format!("hash_bits = {} is above 64", config.hash_bits)));
        }
        if config.format == Format::Auto {
            config.format = Format::Parquet;
        }
        let names = fields.iter().map(|(n, _)| n.clone()).collect();
        let mut p = Pipeline::assemble(config, Parser::Columnar, names, Vec::new(), None)?;
        p.columnar = Some(std::sync::Arc::new(fields));
        Ok(p)
    }

    /// The common end of the constructors: crosses by field name, the bias field, hashing state.
    fn assemble(
        mut config: PipelineConfig,
        parser: Parser,
        base_names: Vec<String>,
        csv_fields: Vec<(String, bool)>,
        csv_header: Option<&[u8]>,
    ) -> Result<Pipeline, DataError> {
        let base = base_names.len() as u32;
        let mut crosses = Vec::new();
        for (i, [a, b]) in config.crosses.iter().enumerate() {
            let find = |name: &String| {
                base_names.iter().position(|n| n == name).map(|p| p as u32).ok_or_else(|| {
                    let shown: Vec<&str> = base_names.iter().take(50).map(String::as_str).collect();
                    DataError::Config(format!(
                        "crosses[{i}] names field {name:?}, which the {} input does not have (fields: {}{})",
                        config.format.name(),
                        shown.join(", "),
                        if base_names.len() > 50 { ", ..." } else { "" }
                    ))
                })
            };
            crosses.push((find(a)?, find(b)?, base + i as u32));
        }
        let bias_field = config.bias.then_some(base + crosses.len() as u32);
        if config.format != Format::Libffm {
            config.num_fields = None;
        }
        let core = Core {
            hash_bits: config.hash_bits,
            numeric: config.numeric,
            binary_labels: config.binary_labels,
            crosses,
            bias_field,
            sort_by_field: false,
            scratch_a: Vec::new(),
            scratch_b: Vec::new(),
        };
        let csv_header = (config.format == Format::Csv).then(|| csv_header.unwrap_or_default().to_vec());
        let mut p = Pipeline {
            config,
            parser,
            core,
            base_names,
            csv_fields,
            csv_header,
            #[cfg(feature = "arrow")]
            columnar: None,
            labels_required: true,
        };
        p.core.sort_by_field = p.csv_out_of_order();
        Ok(p)
    }

    /// A pipeline for `config` and the given input files: resolves `format = auto` from the first
    /// file, reads the CSV header of the first file, and for libFFM without `num_fields` scans
    /// the first [`DEFAULT_SCAN_LINES`] lines of the input (in file order) for the largest field.
    ///
    /// Pass the same, full file list on every worker so that all of them agree.
    pub fn from_files(config: &PipelineConfig, files: &[PathBuf]) -> Result<Pipeline, DataError> {
        let first = files.first().ok_or_else(|| DataError::NoInput { paths: "(no files)".into() })?;
        let mut config = config.clone();
        if config.format == Format::Auto {
            config.format = Format::detect(first)?;
        }
        if config.format == Format::Parquet {
            #[cfg(feature = "parquet")]
            return Pipeline::with_columns(&config, crate::parquet::parquet_fields(files, &config.columns)?);
            #[cfg(not(feature = "parquet"))]
            return Err(DataError::Config(format!(
                "{}: this build of Starling reads no Parquet (built without the `parquet` feature)",
                first.display()
            )));
        }
        let header = if config.format == Format::Csv { Some(crate::input::read_header(first)?) } else { None };
        if config.format == Format::Libffm && config.num_fields.is_none() {
            config.num_fields = Some(scan_num_fields(files, DEFAULT_SCAN_LINES)?.max(1));
        }
        Pipeline::new(&config, header.as_deref()).map_err(|e| match e {
            DataError::Config(m) if config.format == Format::Csv => {
                DataError::Header { path: first.clone(), message: m }
            }
            e => e,
        })
    }

    /// The resolved config (format never `auto`; `num_fields` set for libFFM).
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The input format.
    pub fn format(&self) -> Format {
        self.config.format
    }

    /// Number of fields: input fields, then one per cross, then the bias field.
    pub fn num_fields(&self) -> usize {
        self.base_names.len() + self.core.crosses.len() + usize::from(self.core.bias_field.is_some())
    }

    /// Field names in field order: the input's (`I1..I13,C1..C26` for Criteo, column names for
    /// CSV, namespace characters for VW, `"0"` for LibSVM, `"0".."n-1"` for libFFM), then
    /// `a*b` for each cross, then `bias`.
    pub fn field_names(&self) -> Vec<String> {
        let mut out = self.base_names.clone();
        for [a, b] in &self.config.crosses {
            out.push(format!("{a}*{b}"));
        }
        if self.core.bias_field.is_some() {
            out.push("bias".into());
        }
        out
    }

    /// The fields the input itself has (no crosses, no bias), by field number.
    pub fn base_field_names(&self) -> &[String] {
        &self.base_names
    }

    /// Columnar input: the base fields (column name and kind) in field order; empty for text.
    #[cfg(feature = "arrow")]
    pub fn columnar_fields(&self) -> &[(String, ColumnKind)] {
        self.columnar.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Whether columnar input must have a label column (true unless [`Pipeline::labels_optional`]).
    pub fn labels_required(&self) -> bool {
        self.labels_required
    }

    /// Lets columnar input lack the label column, for data to predict: its label reads as 0.
    pub fn labels_optional(mut self) -> Self {
        self.labels_required = false;
        self
    }

    /// The bias feature's field, when `bias` is on.
    pub fn bias_field(&self) -> Option<u32> {
        self.core.bias_field
    }

    /// The CSV header the column mapping was built from (CSV only).
    pub fn csv_header(&self) -> Option<&[u8]> {
        self.csv_header.as_deref()
    }

    /// Re-maps CSV columns for a file with another header (columns may be in another order);
    /// field numbers stay those of the config. A no-op for other formats or the same header.
    pub fn set_csv_header(&mut self, header: &[u8]) -> Result<(), String> {
        if self.config.format != Format::Csv || self.csv_header.as_deref() == Some(header) {
            return Ok(());
        }
        let delim = csv_delimiter(&self.config.columns).map_err(|e| e.to_string())?;
        let cols = header_names(header, delim)?;
        let roles = csv_roles(&self.config.columns, &self.csv_fields, &cols)?;
        self.parser = Parser::Csv(CsvParser::new(delim, roles));
        self.csv_header = Some(header.to_vec());
        self.core.sort_by_field = self.csv_out_of_order();
        Ok(())
    }

    /// CSV: true when the header's feature columns are not in field order.
    fn csv_out_of_order(&self) -> bool {
        let Parser::Csv(p) = &self.parser else { return false };
        let fields = p.roles().iter().filter_map(|r| match r {
            ColumnRole::Numeric(f) | ColumnRole::Categorical(f) => Some(*f),
            _ => None,
        });
        let mut last = None;
        for f in fields {
            if last.is_some_and(|l| f < l) {
                return true;
            }
            last = Some(f);
        }
        false
    }

    /// Starts an example: clears `ex` and returns a sink to feed raw features into (for sources
    /// that are not text lines, such as Arrow batches); call [`ExampleSink::finish`] at the end.
    pub fn begin<'a>(&'a mut self, ex: &'a mut Example) -> ExampleSink<'a> {
        ex.clear();
        ExampleSink { core: &mut self.core, ex }
    }

    /// Parses one line (without its line terminator) into `ex`, reusing its allocation.
    /// `Ok(false)` means the line holds no example (a comment); `ex` is then empty.
    #[inline]
    pub fn parse_line(&mut self, line: &[u8], ex: &mut Example) -> Result<bool, LineError> {
        ex.clear();
        let mut sink = ExampleSink { core: &mut self.core, ex };
        let ok = match &mut self.parser {
            Parser::LibSvm(p) => p.parse(line, &mut sink),
            Parser::LibFfm(p) => p.parse(line, &mut sink),
            Parser::Criteo(p) => p.parse(line, &mut sink),
            Parser::Vw(p) => p.parse(line, &mut sink),
            Parser::Csv(p) => p.parse(line, &mut sink),
            Parser::Columnar => Err(LineError::new(1, "no text line: columnar input is read by batches", line)),
        }?;
        if ok {
            sink.finish();
        }
        Ok(ok)
    }
}

/// The CSV delimiter as a byte.
fn csv_delimiter(c: &ColumnConfig) -> Result<u8, DataError> {
    if c.delimiter.is_ascii() && c.delimiter != '"' && c.delimiter != '\n' && c.delimiter != '\r' {
        Ok(c.delimiter as u8)
    } else {
        Err(DataError::Config(format!(
            "columns.delimiter {:?} must be an ASCII character other than '\"' and newlines",
            c.delimiter
        )))
    }
}

/// Column names of a header line.
fn header_names(header: &[u8], delim: u8) -> Result<Vec<String>, String> {
    let cells = split_line(header, delim).map_err(|e| format!("column {}: expected {}", e.column, e.expected))?;
    Ok(cells.iter().map(|c| crate::format::printable(c, 200).trim().to_string()).collect())
}

/// Index of column `name`: an exact match, else the only case-insensitive one.
fn find_column(cols: &[String], name: &str) -> Option<usize> {
    if let Some(i) = cols.iter().position(|c| c == name) {
        return Some(i);
    }
    let mut hits = cols.iter().enumerate().filter(|(_, c)| c.eq_ignore_ascii_case(name));
    match (hits.next(), hits.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// The base fields of a CSV config: (name, numeric?) in field order.
fn csv_field_list(c: &ColumnConfig, cols: &[String]) -> Result<Vec<(String, bool)>, DataError> {
    if let Some(v) = c.vectors.first() {
        return Err(DataError::Config(format!(
            "columns.vectors ({v:?}) applies to Parquet input: CSV cells hold one value each"
        )));
    }
    let mut fields: Vec<(String, bool)> = if c.numeric.is_empty() && c.categorical.is_empty() {
        let skip = |i: usize| {
            Some(i) == find_column(cols, &c.label)
                || c.weight.as_deref().and_then(|w| find_column(cols, w)) == Some(i)
                || c.ignore.iter().any(|n| find_column(cols, n) == Some(i))
        };
        cols.iter().enumerate().filter(|(i, _)| !skip(*i)).map(|(_, n)| (n.clone(), false)).collect()
    } else {
        c.numeric.iter().map(|n| (n.clone(), true)).chain(c.categorical.iter().map(|n| (n.clone(), false))).collect()
    };
    let mut seen = std::collections::HashSet::new();
    for (n, _) in &fields {
        if !seen.insert(n.as_str()) {
            return Err(DataError::Config(format!("column {n:?} is listed twice in [features.columns]")));
        }
    }
    fields.shrink_to_fit();
    Ok(fields)
}

/// Role of each header column, given the base fields.
fn csv_roles(c: &ColumnConfig, fields: &[(String, bool)], cols: &[String]) -> Result<Vec<ColumnRole>, String> {
    let shown = || {
        let v: Vec<&str> = cols.iter().take(60).map(String::as_str).collect();
        format!("{}{}", v.join(","), if cols.len() > 60 { ",..." } else { "" })
    };
    let mut roles = vec![ColumnRole::Ignore; cols.len()];
    let label = find_column(cols, &c.label)
        .ok_or_else(|| format!("no label column {:?} (set columns.label; columns: {})", c.label, shown()))?;
    roles[label] = ColumnRole::Label;
    if let Some(w) = &c.weight {
        let i = find_column(cols, w)
            .ok_or_else(|| format!("no weight column {w:?} named by columns.weight (columns: {})", shown()))?;
        if roles[i] != ColumnRole::Ignore {
            return Err(format!("column {w:?} cannot be both label and weight"));
        }
        roles[i] = ColumnRole::Weight;
    }
    for (f, (name, numeric)) in fields.iter().enumerate() {
        let i = find_column(cols, name).ok_or_else(|| {
            format!(
                "no column {name:?} named by columns.{} (columns: {})",
                if *numeric { "numeric" } else { "categorical" },
                shown()
            )
        })?;
        if roles[i] != ColumnRole::Ignore {
            return Err(format!("column {name:?} is used twice (label, weight or feature)"));
        }
        roles[i] = if *numeric { ColumnRole::Numeric(f as u32) } else { ColumnRole::Categorical(f as u32) };
    }
    Ok(roles)
}

/// Records the largest field seen.
struct MaxField(Option<u32>);

impl RawSink for MaxField {
    fn label(&mut self, _: f32) {}
    fn weight(&mut self, _: f32) {}
    fn id(&mut self, field: u32, _: u64, _: f32) {
        self.0 = Some(self.0.map_or(field, |m| m.max(field)));
    }
    fn token(&mut self, _: u32, _: &[u8], _: f32) {}
    fn number(&mut self, _: u32, _: f32) {}
}

/// libFFM: the number of fields (largest field + 1) over the first `max_lines` lines of `files`,
/// read in order. Malformed lines are passed over (the reader reports them). 0 when no feature
/// was seen.
///
/// A field at or above [`MAX_LIBFFM_FIELDS`] is refused, naming its file, line and column: one
/// such typo would otherwise size every per-field structure by it.
pub fn scan_num_fields(files: &[PathBuf], max_lines: u64) -> Result<usize, DataError> {
    let parser = LibFfmParser::new(None);
    let mut sink = MaxField(None);
    let mut lines = 0u64;
    'files: for f in files {
        let mut src = LineSource::open(&Split::whole(f)?, false)?;
        let mut line_no = 0u64;
        while let Some(line) = src.next_line()? {
            if lines >= max_lines {
                break 'files;
            }
            lines += 1;
            line_no += 1;
            let _ = parser.parse(line, &mut sink);
            if let Some(field) = sink.0.filter(|&m| m as usize >= MAX_LIBFFM_FIELDS) {
                // The token whose field it is: `field:idx:val`, counted from 1.
                let column = line
                    .split(u8::is_ascii_whitespace)
                    .filter(|t| !t.is_empty())
                    .position(|t| t.split(|&b| b == b':').next() == Some(field.to_string().as_bytes()))
                    .map_or(0, |i| i + 1);
                return Err(DataError::Parse {
                    path: f.clone(),
                    line: line_no,
                    column,
                    expected: format!("a libFFM field below {MAX_LIBFFM_FIELDS} (fields are numbered from 0)"),
                    got: field.to_string(),
                });
            }
        }
    }
    Ok(sink.0.map_or(0, |m| m as usize + 1))
}

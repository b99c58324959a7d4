//! The rows of a `/predict` request as examples. JSON feature maps are written as lines of the
//! model's input format and parsed, like lines sent as text, by the model's own feature
//! pipeline: a row featurizes exactly as the same line would in a file given to
//! `starling predict`, and no second copy of any format's hashing exists.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use starling_core::Example;
use starling_data::{Format, LineError, Pipeline};

/// Why a request's rows could not be read: the row (or line) and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError(pub String);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON value with the order of its objects' keys kept: features are summed in the order
/// they are written, as they are when the same line is read from a file.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    List(Vec<Json>),
    Map(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(x)
                    .map(Json::Number)
                    .ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = a.next_element()? {
                    out.push(x);
                }
                Ok(Json::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out: Vec<(String, Json)> = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Json>()? {
                    if out.iter().any(|(o, _)| *o == k) {
                        return Err(de::Error::custom(format!("the key {k:?} appears twice")));
                    }
                    out.push((k, v));
                }
                Ok(Json::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Json {
    /// What kind of value this is, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::List(_) => "a list",
            Json::Map(_) => "an object",
        }
    }
}

/// The body of a JSON request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// One object per row.
    rows: Vec<Json>,
}

/// How JSON rows become lines of the model's format.
#[derive(Clone, Debug)]
enum Shape {
    /// One cell per field (CSV, Criteo TSV): `lead` (the label, and a weight) then the fields.
    Columns { delimiter: u8, quoting: bool, lead: String, fields: HashMap<String, usize>, names: Vec<String> },
    /// VW: namespaces of named features.
    Vw { namespaces: Vec<u8> },
    /// LibSVM: indices and values.
    LibSvm,
    /// libFFM: fields of indices and values.
    LibFfm { num_fields: usize },
}

/// Reads request bodies into examples for one model.
#[derive(Clone, Debug)]
pub struct RowReader {
    pipeline: Pipeline,
    shape: Shape,
    line: Vec<u8>,
}

impl RowReader {
    /// A reader of rows for a model whose input `pipeline` reads (its CSV header, if any, being
    /// the label column then the fields: see [`csv_header`]).
    pub fn new(pipeline: Pipeline) -> Result<Self, String> {
        let config = pipeline.config();
        let names = pipeline.base_field_names().to_vec();
        let index = || names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let shape = match config.format {
            Format::Csv => Shape::Columns {
                delimiter: config.columns.delimiter as u8,
                quoting: true,
                lead: csv_lead(config),
                fields: index(),
                names: names.clone(),
            },
            Format::Criteo => {
                Shape::Columns { delimiter: b'\t', quoting: false, lead: "0".into(), fields: index(), names: names.clone() }
            }
            Format::Vw => Shape::Vw { namespaces: config.namespaces.as_bytes().to_vec() },
            Format::Libsvm => Shape::LibSvm,
            Format::Libffm => Shape::LibFfm { num_fields: names.len() },
            other => {
                return Err(format!(
                    "the model was trained on {} input, whose rows `starling serve` cannot take: it serves models of text formats (csv, criteo, vw, libsvm, libffm)",
                    other.name()
                ))
            }
        };
        Ok(RowReader { pipeline, shape, line: Vec::new() })
    }

    /// The rows of a JSON body (`{"rows": [{...}, ...]}`) as examples, appended to `out`.
    pub fn read_json(&mut self, body: &[u8], out: &mut Vec<Example>) -> Result<(), RowError> {
        let body: Body = serde_json::from_slice(body).map_err(|e| RowError(format!("malformed request: {e}")))?;
        for (i, row) in body.rows.iter().enumerate() {
            let at = |m: String| RowError(format!("row {}: {m}", i + 1));
            let Json::Map(row) = row else {
                return Err(at(format!("expected an object of fields, got {}", row.kind())));
            };
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            self.shape.write(row, &mut line).map_err(at)?;
            let mut ex = Example::default();
            let parsed = self.pipeline.parse_line(&line, &mut ex).map_err(|e| at(self.shape.explain(&e)));
            self.line = line;
            if parsed? {
                out.push(ex);
            }
        }
        Ok(())
    }

    /// The lines of a text body in the model's input format (CSV: a header line first) as
    /// examples, appended to `out`; blank lines and comments hold none.
    pub fn read_lines(&mut self, body: &[u8], out: &mut Vec<Example>) -> Result<(), RowError> {
        let mut header_due = self.pipeline.format() == Format::Csv;
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = |m: String| RowError(format!("line {}: {m}", i + 1));
            if header_due {
                self.pipeline.set_csv_header(line).map_err(|m| at(format!("the CSV header: {m}")))?;
                header_due = false;
                continue;
            }
            let mut ex = Example::default();
            if self.pipeline.parse_line(line, &mut ex).map_err(|e| at(explain(&e)))? {
                out.push(ex);
            }
        }
        Ok(())
    }
}

/// The header a CSV model's rows are written under: its label column, its weight column if it
/// has one, then its fields in field order.
pub fn csv_header(config: &starling_data::PipelineConfig, fields: &[String]) -> String {
    let d = config.columns.delimiter.to_string();
    let mut cols = vec![config.columns.label.clone()];
    cols.extend(config.columns.weight.clone());
    cols.extend(fields.iter().cloned());
    cols.join(&d)
}

/// The cells before the fields in a CSV model's rows: label 0, and weight 1 when it has one.
fn csv_lead(config: &starling_data::PipelineConfig) -> String {
    let d = config.columns.delimiter;
    if config.columns.weight.is_some() {
        format!("0{d}1")
    } else {
        "0".into()
    }
}

/// A parse error of a line the client wrote.
fn explain(e: &LineError) -> String {
    format!("column {} \"{}\": expected {}", e.column, e.got, e.expected)
}

impl Shape {
    /// A parse error of a line written from a JSON row, in the row's terms where they differ.
    fn explain(&self, e: &LineError) -> String {
        match self {
            Shape::Columns { names, lead, delimiter, .. } => {
                let lead_cells = lead.bytes().filter(|b| b == delimiter).count() + 1;
                match e.column.checked_sub(lead_cells + 1).and_then(|i| names.get(i)) {
                    Some(name) => format!("field `{name}` \"{}\": expected {}", e.got, e.expected),
                    None => explain(e),
                }
            }
            _ => format!("\"{}\": expected {}", e.got, e.expected),
        }
    }

    /// Writes `row` as a line of the format (its label 0) into `line`.
    fn write(&self, row: &[(String, Json)], line: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Shape::Columns { delimiter, quoting, lead, fields, names } => {
                let mut cells: Vec<Option<&Json>> = vec![None; names.len()];
                for (k, v) in row {
                    let Some(&i) = fields.get(k) else {
                        return Err(format!("unknown field `{k}`; the model's fields are {}", list(names)));
                    };
                    cells[i] = Some(v);
                }
                line.extend_from_slice(lead.as_bytes());
                for (cell, name) in cells.into_iter().zip(names) {
                    line.push(*delimiter);
                    let text = match cell {
                        None | Some(Json::Null) => continue,
                        Some(Json::Number(n)) => n.to_string(),
                        Some(Json::String(s)) => s.clone(),
                        Some(other) => {
                            return Err(format!("field `{name}`: expected a number or a string, got {}", other.kind()))
                        }
                    };
                    if text.contains(['\n', '\r']) {
                        return Err(format!("field `{name}`: a value cannot hold a line break"));
                    }
                    let delim = *delimiter as char;
                    if !*quoting && text.contains(delim) {
                        return Err(format!("field `{name}`: a value cannot hold the delimiter {delim:?}"));
                    }
                    if *quoting && (text.contains(delim) || text.starts_with('"')) {
                        line.push(b'"');
                        line.extend_from_slice(text.replace('"', "\"\"").as_bytes());
                        line.push(b'"');
                    } else {
                        line.extend_from_slice(text.as_bytes());
                    }
                }
                Ok(())
            }
            Shape::Vw { namespaces } => {
                line.push(b'0');
                if row.is_empty() {
                    // No features: the bias alone, as a line `0 |` reads.
                    line.extend_from_slice(b" |");
                }
                for (ns, v) in row {
                    let first = ns.bytes().next().unwrap_or(b' ');
                    if !namespaces.is_empty() && !namespaces.contains(&first) {
                        let known: Vec<String> = namespaces.iter().map(|&b| format!("`{}`", b as char)).collect();
                        return Err(format!(
                            "unknown namespace `{ns}`; the model's namespaces start with {}",
                            known.join(", ")
                        ));
                    }
                    if !first.is_ascii() || (!ns.is_empty() && !vw_name(ns)) {
                        return Err(format!(
                            "namespace `{ns}`: a name of ASCII first letter without spaces, '|' or ':'"
                        ));
                    }
                    line.extend_from_slice(b" |");
                    line.extend_from_slice(ns.as_bytes());
                    let mut feature = |name: &str, value: Option<&serde_json::Number>| {
                        if !vw_name(name) {
                            return Err(format!(
                                "namespace `{ns}`: feature {name:?}: a name must be non-empty, without spaces, '|' or ':'"
                            ));
                        }
                        line.push(b' ');
                        line.extend_from_slice(name.as_bytes());
                        if let Some(x) = value {
                            line.push(b':');
                            line.extend_from_slice(x.to_string().as_bytes());
                        }
                        Ok(())
                    };
                    match v {
                        Json::String(s) => feature(s, None)?,
                        Json::List(items) => {
                            for item in items {
                                let Json::String(s) = item else {
                                    return Err(format!(
                                        "namespace `{ns}`: a list holds feature names, got {}",
                                        item.kind()
                                    ));
                                };
                                feature(s, None)?;
                            }
                        }
                        Json::Map(fs) => {
                            for (name, x) in fs {
                                let Json::Number(x) = x else {
                                    return Err(format!(
                                        "namespace `{ns}`: feature {name:?}: expected a number, got {}",
                                        x.kind()
                                    ));
                                };
                                feature(name, Some(x))?;
                            }
                        }
                        other => {
                            return Err(format!(
                                "namespace `{ns}`: expected features as {{\"name\": value}}, [\"name\", ...] or \"name\", got {}",
                                other.kind()
                            ))
                        }
                    }
                }
                Ok(())
            }
            Shape::LibSvm => {
                line.push(b'0');
                for (idx, x) in row {
                    index(idx, "feature index")?;
                    let Json::Number(x) = x else {
                        return Err(format!("feature {idx}: expected a number, got {}", x.kind()));
                    };
                    line.extend_from_slice(format!(" {idx}:{x}").as_bytes());
                }
                Ok(())
            }
            Shape::LibFfm { num_fields } => {
                line.push(b'0');
                for (field, fs) in row {
                    let f = index(field, "field")?;
                    if f >= *num_fields as u64 {
                        return Err(format!("field {field}: the model has fields 0 to {}", num_fields - 1));
                    }
                    let Json::Map(fs) = fs else {
                        return Err(format!(
                            "field {field}: expected features as {{\"index\": value}}, got {}",
                            fs.kind()
                        ));
                    };
                    for (idx, x) in fs {
                        index(idx, "feature index")?;
                        let Json::Number(x) = x else {
                            return Err(format!("field {field}: feature {idx}: expected a number, got {}", x.kind()));
                        };
                        line.extend_from_slice(format!(" {field}:{idx}:{x}").as_bytes());
                    }
                }
                Ok(())
            }
        }
    }
}

/// A VW namespace or feature name: non-empty, no whitespace, `|` or `:`.
fn vw_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '|' || c == ':')
}

/// A non-negative integer key of a LibSVM or libFFM row.
fn index(s: &str, what: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(i) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(i),
        _ => Err(format!("{what} {s:?}: expected a non-negative integer")),
    }
}

/// Names for a message: all of them, or the first ten and a count.
fn list(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(10).map(|n| format!("`{n}`")).collect();
    match names.len() {
        n if n > 10 => format!("{} and {} more", shown.join(", "), n - 10),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_data::PipelineConfig;

    fn reader(config: PipelineConfig, header: Option<&str>) -> RowReader {
        RowReader::new(Pipeline::new(&config, header.map(str::as_bytes)).unwrap()).unwrap()
    }

    /// The examples of a JSON body and of the lines it stands for are the same.
    fn same(r: &mut RowReader, json: &str, lines: &str) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        r.read_json(json.as_bytes(), &mut a).unwrap();
        r.clone().read_lines(lines.as_bytes(), &mut b).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.features, y.features);
        }
    }

    #[test]
    fn json_rows_featurize_as_their_lines() {
        let vw = PipelineConfig { format: Format::Vw, ..PipelineConfig::default() };
        same(
            &mut reader(vw, None),
            r#"{"rows": [{"user": {"age": 31, "x": 0.5}, "b": ["t1", "t2"], "c": "one"}, {}]}"#,
            "0 |user age:31 x:0.5 |b t1 t2 |c one\n0 |\n",
        );
        let svm = PipelineConfig { format: Format::Libsvm, ..PipelineConfig::default() };
        same(&mut reader(svm, None), r#"{"rows": [{"7": 1, "3": 0.25}]}"#, "0 7:1 3:0.25\n");
        let ffm = PipelineConfig { format: Format::Libffm, num_fields: Some(3), ..PipelineConfig::default() };
        same(&mut reader(ffm, None), r#"{"rows": [{"2": {"5": 1}, "0": {"9": 0.5}}]}"#, "0 2:5:1 0:9:0.5\n");
        let criteo = PipelineConfig { format: Format::Criteo, ..PipelineConfig::default() };
        let mut tsv = vec!["0".to_string(); 40];
        tsv[1] = "5".into();
        tsv[14] = "ab12".into();
        for c in tsv.iter_mut().skip(2).filter(|c| *c == "0") {
            c.clear();
        }
        same(&mut reader(criteo, None), r#"{"rows": [{"C1": "ab12", "I1": 5}]}"#, &(tsv.join("\t") + "\n"));
        let csv = PipelineConfig { format: Format::Csv, ..PipelineConfig::default() };
        let header = "label,age,city";
        same(
            &mut reader(csv, Some(header)),
            r#"{"rows": [{"city": "a,b", "age": 3}]}"#,
            "label,age,city\n0,3,\"a,b\"\n",
        );
    }

    #[test]
    fn bad_rows_say_which_and_why() {
        let mut csv = PipelineConfig { format: Format::Csv, ..PipelineConfig::default() };
        csv.columns.numeric = vec!["age".into()];
        csv.columns.categorical = vec!["city".into()];
        let mut r = reader(csv, Some("label,age,city"));
        let err = |r: &mut RowReader, body: &str| r.read_json(body.as_bytes(), &mut Vec::new()).unwrap_err().0;
        assert!(err(&mut r, r#"{"rows": [{}, {"height": 3}]}"#).starts_with("row 2: unknown field `height`"));
        assert!(err(&mut r, r#"{"rows": [{"age": "old"}]}"#).starts_with("row 1: field `age` \"old\": expected"));
        assert!(err(&mut r, r#"{"rows": [{"age": [1]}]}"#).contains("expected a number or a string, got a list"));
        assert!(err(&mut r, r#"{"rows": [3]}"#).contains("row 1: expected an object of fields, got a number"));
        assert!(err(&mut r, r#"{"rowz": []}"#).starts_with("malformed request: unknown field `rowz`"));
        assert!(err(&mut r, r#"{"rows": [{"age": 1, "age": 2}]}"#).contains("appears twice"));
        assert!(err(&mut r, "{\"rows\": [").contains("line 1 column"));
        let vw = PipelineConfig { format: Format::Vw, namespaces: "ab".into(), ..PipelineConfig::default() };
        let mut r = reader(vw, None);
        assert!(err(&mut r, r#"{"rows": [{"c": "x"}]}"#).contains("unknown namespace `c`"));
        assert!(err(&mut r, r#"{"rows": [{"a": "x y"}]}"#).contains("feature \"x y\""));
        let text = r.read_lines(b"0 |a x\n0 a\n", &mut Vec::new()).unwrap_err().0;
        assert!(text.starts_with("line 2: "), "{text}");
    }
}

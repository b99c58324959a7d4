//! Examples from Arrow record batches: the column mapping of `[features.columns]` applied to
//! Arrow types, for Parquet files and for batches handed over by Spark or Python.
//!
//! A column's Arrow type decides what it becomes (see docs/input-formats.md):
//! * floats → numeric (the pipeline's numeric transform);
//! * integers, booleans, strings, binary → categorical: one token per value (integers as their
//!   decimal digits, so a column reads the same from CSV and from Parquet);
//! * a Spark ML vector (`struct<type: int8, size: int32, indices: list<int32>, values:
//!   list<double>>`), a list of integers (ids, value 1) or a list of floats (dense values) → one
//!   field of ids. Vector position `i` is id `i + 1`: Spark's LibSVM reader stores LibSVM's 1-based
//!   ids at 0-based positions, so the same rows give the same keys from either file. Zeros of
//!   dense vectors are skipped, as a sparse vector would not hold them.

use std::io::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, GenericListArray, OffsetSizeTrait};
use arrow_schema::{DataType, Schema};

use crate::format::RawSink;
use crate::pipeline::ColumnConfig;

mod batches;
/// The Arrow record batch, re-exported for callers that hand batches in.
pub use arrow_array::RecordBatch;
pub use batches::{batch_share, BatchesReader, Decoded};

/// What a feature column becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// One value through the numeric transform.
    Numeric,
    /// One token per value.
    Categorical,
    /// Ids with values: a Spark ML vector or a list.
    Vector,
}

impl ColumnKind {
    /// The kind as `[features.columns]` names it.
    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
            ColumnKind::Vector => "vector",
        }
    }
}

/// The kind a column of type `dt` has when the config does not say, or `None` if it cannot be used.
pub fn kind_of(dt: &DataType) -> Option<ColumnKind> {
    use DataType::*;
    match dt {
        Float16 | Float32 | Float64 => Some(ColumnKind::Numeric),
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Boolean | Utf8 | LargeUtf8 | Utf8View
        | Binary | LargeBinary | BinaryView => Some(ColumnKind::Categorical),
        Struct(f) if f.find("indices").is_some() && f.find("values").is_some() => Some(ColumnKind::Vector),
        List(f) | LargeList(f) if f.data_type().is_integer() || f.data_type().is_floating() => Some(ColumnKind::Vector),
        _ => None,
    }
}

/// Whether a column of type `dt` can be read as `kind` (the config may ask for less than
/// [`kind_of`]: an integer column as numeric, a float column as categorical).
fn can_be(dt: &DataType, kind: ColumnKind) -> bool {
    match (kind, kind_of(dt)) {
        (ColumnKind::Vector, k) => k == Some(ColumnKind::Vector),
        (ColumnKind::Numeric, Some(ColumnKind::Numeric)) => true,
        (ColumnKind::Numeric, _) => dt.is_integer() || *dt == DataType::Boolean,
        (ColumnKind::Categorical, k) => matches!(k, Some(ColumnKind::Numeric | ColumnKind::Categorical)),
    }
}

/// Index of column `name` in `schema`: an exact match, else the only case-insensitive one.
fn find(schema: &Schema, name: &str) -> Option<usize> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if let Some(i) = names.iter().position(|c| *c == name) {
        return Some(i);
    }
    let mut hits = names.iter().enumerate().filter(|(_, c)| c.eq_ignore_ascii_case(name));
    match (hits.next(), hits.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// The columns of `schema`, for messages.
fn shown(schema: &Schema) -> String {
    let v: Vec<String> = schema.fields().iter().take(40).map(|f| format!("{} ({})", f.name(), f.data_type())).collect();
    format!("{}{}", v.join(", "), if schema.fields().len() > 40 { ", ..." } else { "" })
}

/// The base fields of columnar input, `(column name, kind)` in field order: the config's
/// `numeric`, `categorical` and `vectors` lists, or when all are empty every column but label,
/// weight and `ignore`, in schema order, with the kind its type gives.
pub fn field_list(schema: &Schema, c: &ColumnConfig) -> Result<Vec<(String, ColumnKind)>, String> {
    let explicit = !(c.numeric.is_empty() && c.categorical.is_empty() && c.vectors.is_empty());
    let fields: Vec<(String, ColumnKind)> = if explicit {
        let mut out = Vec::new();
        for (names, kind) in [
            (&c.numeric, ColumnKind::Numeric),
            (&c.categorical, ColumnKind::Categorical),
            (&c.vectors, ColumnKind::Vector),
        ] {
            out.extend(names.iter().map(|n| (n.clone(), kind)));
        }
        out
    } else {
        let skip = |name: &str| {
            let is = |other: &str| name == other || name.eq_ignore_ascii_case(other);
            is(&c.label) || c.weight.as_deref().is_some_and(is) || c.ignore.iter().any(|i| is(i))
        };
        let mut out = Vec::new();
        for f in schema.fields().iter().filter(|f| !skip(f.name())) {
            let kind = kind_of(f.data_type()).ok_or_else(|| {
                format!(
                    "column {:?} has type {}, which Starling cannot use as a feature; list it in columns.ignore",
                    f.name(),
                    f.data_type()
                )
            })?;
            out.push((f.name().clone(), kind));
        }
        out
    };
    let mut seen = std::collections::HashSet::new();
    for (n, _) in &fields {
        if !seen.insert(n.as_str()) {
            return Err(format!("column {n:?} is listed twice in [features.columns]"));
        }
    }
    Ok(fields)
}

/// What a column of one file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not read.
    Ignore,
    /// The label.
    Label,
    /// The importance weight.
    Weight,
    /// A feature field.
    Field(u32, ColumnKind),
}

/// The role of each column of `schema` (one file's; columns may be in any order) for `fields`.
/// Without `require_label` (data to predict), a missing label column reads as label 0.
pub fn column_roles(
    schema: &Schema,
    fields: &[(String, ColumnKind)],
    c: &ColumnConfig,
    require_label: bool,
) -> Result<Vec<Role>, String> {
    let mut roles = vec![Role::Ignore; schema.fields().len()];
    match find(schema, &c.label) {
        Some(label) => roles[label] = Role::Label,
        None if !require_label => {}
        None => return Err(format!("no label column {:?} (set columns.label; columns: {})", c.label, shown(schema))),
    }
    if let Some(w) = &c.weight {
        let i = find(schema, w)
            .ok_or_else(|| format!("no weight column {w:?} named by columns.weight (columns: {})", shown(schema)))?;
        if roles[i] != Role::Ignore {
            return Err(format!("column {w:?} cannot be both label and weight"));
        }
        roles[i] = Role::Weight;
    }
    for (i, role) in roles.iter().enumerate() {
        let dt = schema.field(i).data_type();
        if matches!(role, Role::Label | Role::Weight) && !can_be(dt, ColumnKind::Numeric) {
            return Err(format!(
                "column {:?} has type {dt}; a label or weight must be a number",
                schema.field(i).name()
            ));
        }
    }
    for (f, (name, kind)) in fields.iter().enumerate() {
        let i = find(schema, name).ok_or_else(|| format!("no column {name:?} (columns: {})", shown(schema)))?;
        if roles[i] != Role::Ignore {
            return Err(format!("column {name:?} is used twice (label, weight or feature)"));
        }
        let dt = schema.field(i).data_type();
        if !can_be(dt, *kind) {
            return Err(format!("column {name:?} has type {dt}, which cannot be read as a {} column", kind.name()));
        }
        roles[i] = Role::Field(f as u32, *kind);
    }
    Ok(roles)
}

/// Why one row could not become an example.
#[derive(Clone, Debug, PartialEq)]
pub struct RowError {
    /// The column at fault.
    pub column: String,
    /// What was wrong.
    pub message: String,
}

/// A numeric column, any Arrow number type.
enum Num<'a> {
    F32(&'a arrow_array::Float32Array),
    F64(&'a arrow_array::Float64Array),
    I8(&'a arrow_array::Int8Array),
    I16(&'a arrow_array::Int16Array),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    U8(&'a arrow_array::UInt8Array),
    U16(&'a arrow_array::UInt16Array),
    U32(&'a arrow_array::UInt32Array),
    U64(&'a arrow_array::UInt64Array),
    Bool(&'a arrow_array::BooleanArray),
}

impl<'a> Num<'a> {
    fn new(a: &'a ArrayRef) -> Option<Self> {
        Some(match a.data_type() {
            DataType::Float32 => Num::F32(a.as_primitive::<Float32Type>()),
            DataType::Float64 => Num::F64(a.as_primitive::<Float64Type>()),
            DataType::Int8 => Num::I8(a.as_primitive::<Int8Type>()),
            DataType::Int16 => Num::I16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => Num::I32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => Num::I64(a.as_primitive::<Int64Type>()),
            DataType::UInt8 => Num::U8(a.as_primitive::<UInt8Type>()),
            DataType::UInt16 => Num::U16(a.as_primitive::<UInt16Type>()),
            DataType::UInt32 => Num::U32(a.as_primitive::<UInt32Type>()),
            DataType::UInt64 => Num::U64(a.as_primitive::<UInt64Type>()),
            DataType::Boolean => Num::Bool(a.as_boolean()),
            _ => return None,
        })
    }

    /// The value at `row` as f64, `None` when null.
    #[inline]
    fn get(&self, row: usize) -> Option<f64> {
        match self {
            Num::F32(a) => (!a.is_null(row)).then(|| f64::from(a.value(row))),
            Num::F64(a) => (!a.is_null(row)).then(|| a.value(row)),
            Num::Bool(a) => (!a.is_null(row)).then(|| f64::from(u8::from(a.value(row)))),
            _ => self.get_int(row).map(|v| v as f64),
        }
    }

    /// The value at `row` as an integer (floats truncated), `None` when null: ids above 2^53
    /// stay exact.
    #[inline]
    fn get_int(&self, row: usize) -> Option<i128> {
        macro_rules! v {
            ($a:expr) => {
                if $a.is_null(row) {
                    None
                } else {
                    Some($a.value(row) as i128)
                }
            };
        }
        match self {
            Num::I8(a) => v!(a),
            Num::I16(a) => v!(a),
            Num::I32(a) => v!(a),
            Num::I64(a) => v!(a),
            Num::U8(a) => v!(a),
            Num::U16(a) => v!(a),
            Num::U32(a) => v!(a),
            Num::U64(a) => v!(a),
            Num::F32(_) | Num::F64(_) | Num::Bool(_) => self.get(row).map(|x| x as i128),
        }
    }

    /// Integers keep every digit as tokens (an f64 would round ids above 2^53).
    #[inline]
    fn write_token(&self, row: usize, buf: &mut Vec<u8>) -> bool {
        match self {
            Num::Bool(a) => {
                if a.is_null(row) {
                    return false;
                }
                buf.extend_from_slice(if a.value(row) { b"true" } else { b"false" });
            }
            Num::F32(_) | Num::F64(_) => match self.get(row) {
                Some(x) => {
                    let _ = write!(buf, "{x}");
                }
                None => return false,
            },
            _ => match self.get_int(row) {
                Some(v) => {
                    let _ = write!(buf, "{v}");
                }
                None => return false,
            },
        }
        true
    }
}

/// The ids and values of a list (or of a vector's `indices` and `values`), one row at a time.
struct IdList<'a> {
    offsets: Vec<usize>,
    ids: Option<Num<'a>>,
    values: Option<(Vec<usize>, Num<'a>)>,
}

fn list_parts<O: OffsetSizeTrait>(l: &GenericListArray<O>) -> (Vec<usize>, &ArrayRef) {
    (l.value_offsets().iter().map(|o| o.as_usize()).collect(), l.values())
}

fn any_list(a: &ArrayRef) -> Option<(Vec<usize>, &ArrayRef)> {
    if let Some(l) = a.as_list_opt::<i32>() {
        return Some(list_parts(l));
    }
    a.as_list_opt::<i64>().map(list_parts)
}

/// A feature column of one batch.
enum Col<'a> {
    Numeric(Num<'a>),
    NumToken(Num<'a>),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    StrView(&'a arrow_array::StringViewArray),
    Bin(&'a arrow_array::BinaryArray),
    LargeBin(&'a arrow_array::LargeBinaryArray),
    BinView(&'a arrow_array::BinaryViewArray),
    /// A Spark ML vector: `type` 0 sparse (indices and values), 1 dense (values only).
    Vector {
        column: &'a dyn Array,
        ty: Option<Num<'a>>,
        ids: IdList<'a>,
    },
    /// A list of integer ids (value 1) or of float values (position = id - 1).
    List {
        column: &'a dyn Array,
        list: IdList<'a>,
    },
}

impl<'a> Col<'a> {
    fn new(a: &'a ArrayRef, kind: ColumnKind) -> Option<Self> {
        Some(match kind {
            ColumnKind::Numeric => Col::Numeric(Num::new(a)?),
            ColumnKind::Categorical => match a.data_type() {
                DataType::Utf8 => Col::Str(a.as_string::<i32>()),
                DataType::LargeUtf8 => Col::LargeStr(a.as_string::<i64>()),
                DataType::Utf8View => Col::StrView(a.as_string_view()),
                DataType::Binary => Col::Bin(a.as_binary::<i32>()),
                DataType::LargeBinary => Col::LargeBin(a.as_binary::<i64>()),
                DataType::BinaryView => Col::BinView(a.as_binary_view()),
                _ => Col::NumToken(Num::new(a)?),
            },
            ColumnKind::Vector => {
                if let Some(s) = a.as_struct_opt() {
                    let (io, ia) = any_list(s.column_by_name("indices")?)?;
                    let (vo, va) = any_list(s.column_by_name("values")?)?;
                    let ty = s.column_by_name("type").and_then(Num::new);
                    let ids = IdList { offsets: io, ids: Some(Num::new(ia)?), values: Some((vo, Num::new(va)?)) };
                    Col::Vector { column: a.as_ref(), ty, ids }
                } else {
                    let (offsets, child) = any_list(a)?;
                    let list = if child.data_type().is_integer() {
                        IdList { offsets, ids: Some(Num::new(child)?), values: None }
                    } else {
                        IdList { offsets: offsets.clone(), ids: None, values: Some((offsets, Num::new(child)?)) }
                    };
                    Col::List { column: a.as_ref(), list }
                }
            }
        })
    }
}

/// A record batch's columns, ready to feed row after row into a [`RawSink`].
pub struct BatchRows<'a> {
    label: Option<(Num<'a>, &'a str)>,
    weight: Option<Num<'a>>,
    fields: Vec<(u32, Col<'a>, &'a str)>,
    rows: usize,
    token: Vec<u8>,
}

impl<'a> BatchRows<'a> {
    /// The columns of `batch` with the `roles` [`column_roles`] gave for its schema.
    pub fn new(batch: &'a RecordBatch, roles: &[Role]) -> Result<Self, String> {
        let schema = batch.schema_ref();
        let name = |i: usize| schema.field(i).name().as_str();
        let unreadable =
            |i: usize| format!("column {:?} of type {} cannot be read", name(i), schema.field(i).data_type());
        let (mut label, mut weight, mut fields) = (None, None, Vec::new());
        for (i, role) in roles.iter().enumerate() {
            let col = batch.column(i);
            match *role {
                Role::Ignore => {}
                Role::Label => label = Some((Num::new(col).ok_or_else(|| unreadable(i))?, name(i))),
                Role::Weight => weight = Some(Num::new(col).ok_or_else(|| unreadable(i))?),
                Role::Field(f, kind) => fields.push((f, Col::new(col, kind).ok_or_else(|| unreadable(i))?, name(i))),
            }
        }
        // Features in field order, as the text formats give them.
        fields.sort_by_key(|f| f.0);
        Ok(BatchRows { label, weight, fields, rows: batch.num_rows(), token: Vec::new() })
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Feeds row `row` into `sink`: label, weight, then every feature. Nulls are missing values,
    /// except a null label, which is an error.
    pub fn feed(&mut self, row: usize, sink: &mut impl RawSink) -> Result<(), RowError> {
        let err = |column: &str, message: String| RowError { column: column.to_string(), message };
        if let Some((label, name)) = &self.label {
            match label.get(row) {
                Some(y) if y.is_finite() => sink.label(y as f32),
                Some(y) => return Err(err(name, format!("the label is {y}"))),
                None => return Err(err(name, "the label is null".into())),
            }
        }
        if let Some(w) = self.weight.as_ref().and_then(|w| w.get(row)) {
            sink.weight(w as f32);
        }
        for (field, col, name) in &self.fields {
            let field = *field;
            match col {
                Col::Numeric(n) => {
                    if let Some(x) = n.get(row) {
                        sink.number(field, x as f32);
                    }
                }
                Col::NumToken(n) => {
                    self.token.clear();
                    if n.write_token(row, &mut self.token) {
                        sink.token(field, &self.token, 1.0);
                    }
                }
                Col::Str(a) => token_of(*a, row, field, sink, |a, r| a.value(r).as_bytes()),
                Col::LargeStr(a) => token_of(*a, row, field, sink, |a, r| a.value(r).as_bytes()),
                Col::StrView(a) => token_of(*a, row, field, sink, |a, r| a.value(r).as_bytes()),
                Col::Bin(a) => token_of(*a, row, field, sink, |a, r| a.value(r)),
                Col::LargeBin(a) => token_of(*a, row, field, sink, |a, r| a.value(r)),
                Col::BinView(a) => token_of(*a, row, field, sink, |a, r| a.value(r)),
                Col::Vector { column, ty, ids } => {
                    if column.is_null(row) {
                        continue;
                    }
                    let dense = ty.as_ref().and_then(|t| t.get(row)) == Some(1.0);
                    feed_ids(ids, row, field, dense, sink).map_err(|m| err(name, m))?;
                }
                Col::List { column, list } => {
                    if !column.is_null(row) {
                        feed_ids(list, row, field, list.ids.is_none(), sink).map_err(|m| err(name, m))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One token from a string or binary column, unless null.
#[inline]
fn token_of<A: Array, S: RawSink>(a: &A, row: usize, field: u32, sink: &mut S, get: impl Fn(&A, usize) -> &[u8]) {
    if !a.is_null(row) {
        sink.token(field, get(a, row), 1.0);
    }
}

/// The ids of one row: dense rows by position (zeros skipped), sparse ones by their indices.
fn feed_ids(l: &IdList, row: usize, field: u32, dense: bool, sink: &mut impl RawSink) -> Result<(), String> {
    let values = l.values.as_ref().map(|(o, v)| ((o[row], o[row + 1]), v));
    if dense {
        let Some(((a, b), v)) = values else { return Ok(()) };
        for (pos, i) in (a..b).enumerate() {
            match v.get(i) {
                Some(x) if x != 0.0 => sink.id(field, pos as u64 + 1, x as f32),
                _ => {}
            }
        }
        return Ok(());
    }
    let Some(ids) = &l.ids else { return Ok(()) };
    let (a, b) = (l.offsets[row], l.offsets[row + 1]);
    if let Some(((va, vb), _)) = values {
        if vb - va != b - a {
            return Err(format!("{} indices but {} values", b - a, vb - va));
        }
    }
    // A vector's indices are positions (id = position + 1); a plain list holds the ids themselves.
    let shift = u64::from(l.values.is_some());
    for k in 0..b - a {
        let Some(id) = ids.get_int(a + k) else { return Err("a null index".into()) };
        if !(0..=i128::from(u64::MAX - 1)).contains(&id) {
            return Err(format!("index {id} is out of range"));
        }
        let value = match values {
            Some(((va, _), v)) => v.get(va + k).unwrap_or(0.0) as f32,
            None => 1.0,
        };
        sink.id(field, id as u64 + shift, value);
    }
    Ok(())
}

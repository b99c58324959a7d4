//! The config reference, generated from the config types themselves (their doc comments, value
//! sets and defaults, through their JSON schema): `docs/config.md` is `starling config-reference`,
//! and `--print-config` writes every option with its meaning as comments, so neither can leave an
//! option out or drift from the code.

use serde_json::Value;
use starling_core::Optimizer;

use super::JobConfig;

/// Comment lines and table cells wrap at this width.
const WIDTH: usize = 100;

/// One option of a section.
struct Opt {
    key: String,
    /// The option's doc comment.
    doc: String,
    /// Its default, as TOML; `None` when unset by default.
    default: Option<String>,
    /// The values it takes, with their meanings, when it is a choice.
    choices: Vec<(String, String)>,
}

/// A `[section]` of the job file.
struct Section {
    /// Dotted path: `data`, `features.columns`.
    path: String,
    /// The section type's doc comment.
    doc: String,
    options: Vec<Opt>,
}

/// The sections of the job config, in file order, read off its schema.
fn sections() -> Vec<Section> {
    let root = schemars::schema_for!(JobConfig).to_value();
    let defs = root.get("$defs").cloned().unwrap_or(Value::Null);
    let mut out = Vec::new();
    for (name, prop) in properties(&root) {
        if name == "optimizer" {
            continue; // a choice of rules, each with its own options: see `optimizer_rows`
        }
        walk(&name, &prop, &defs, &mut out);
    }
    out
}

/// The `(name, schema)` pairs of an object schema, in declaration order.
fn properties(schema: &Value) -> Vec<(String, Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// `schema` with a `$ref` replaced by its definition (the referring schema's own keys win).
fn resolve(schema: &Value, defs: &Value) -> Value {
    let Some(r) = schema.get("$ref").and_then(Value::as_str) else { return schema.clone() };
    let name = r.trim_start_matches("#/$defs/");
    let mut out = defs.get(name).cloned().unwrap_or(Value::Null);
    if let (Some(o), Some(s)) = (out.as_object_mut(), schema.as_object()) {
        for (k, v) in s {
            if k != "$ref" {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn text(schema: &Value, key: &str) -> String {
    schema.get(key).and_then(Value::as_str).unwrap_or("").trim().to_string()
}

/// Adds the section at `path` (and its subsections, after it) to `out`.
fn walk(path: &str, prop: &Value, defs: &Value, out: &mut Vec<Section>) {
    let section = resolve(prop, defs);
    let mut options = Vec::new();
    let mut subsections = Vec::new();
    for (key, field) in properties(&section) {
        let field_def = resolve(&field, defs);
        if field_def.get("properties").is_some() {
            subsections.push((format!("{path}.{key}"), field));
            continue;
        }
        let default = match field.get("default") {
            None | Some(Value::Null) => None,
            Some(v) => Some(toml_literal(v)),
        };
        options.push(Opt { key, doc: text(&field, "description"), default, choices: choices(&field_def, defs) });
    }
    // A field's own comment describes the section better than its type's.
    let doc = match text(prop, "description") {
        d if d.is_empty() => text(&section, "description"),
        d => d,
    };
    out.push(Section { path: path.to_string(), doc, options });
    for (p, field) in subsections {
        walk(&p, &field, defs, out);
    }
}

/// The values of an enumerated option, each with its meaning (nullable options look through the null).
fn choices(schema: &Value, defs: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        out.extend(values.iter().filter(|v| !v.is_null()).map(|v| (toml_literal(v), String::new())));
    }
    for key in ["oneOf", "anyOf"] {
        for alt in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
            let alt = resolve(alt, defs);
            if let Some(c) = alt.get("const") {
                out.push((toml_literal(c), text(&alt, "description")));
            } else if alt.get("enum").is_some() || alt.get("oneOf").is_some() {
                out.extend(choices(&alt, defs));
            } else if alt.get("type").and_then(Value::as_str) != Some("null") {
                // Open-ended (a number, or "inf"): the option's own comment says what it takes.
                return Vec::new();
            }
        }
    }
    out
}

/// A JSON value as TOML writes it, f32 defaults at their shortest (`0.05`, not `0.05000000074505806`).
fn toml_literal(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0) as f32;
            let s = x.to_string();
            if s.contains(['.', 'e', 'i', 'N']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        Value::Array(a) => format!("[{}]", a.iter().map(toml_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => {
            let fields: Vec<String> = o.iter().map(|(k, v)| format!("{k} = {}", toml_literal(v))).collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Null => "unset".into(),
        other => other.to_string(),
    }
}

/// The optimizers: each rule's name, its meaning and its hyperparameters with their defaults.
fn optimizer_rows() -> Vec<(String, String, String)> {
    let root = schemars::schema_for!(Optimizer).to_value();
    let mut rows = Vec::new();
    for alt in root.get("oneOf").and_then(Value::as_array).into_iter().flatten() {
        let name = alt.pointer("/properties/name/const").and_then(Value::as_str).unwrap_or("").to_string();
        let Some(opt) = Optimizer::default_for(&name) else { continue };
        let params = opt
            .hyperparameters()
            .iter()
            .map(|(p, v)| {
                let doc = alt.pointer(&format!("/properties/{p}/description")).and_then(Value::as_str).unwrap_or("");
                format!("`{p}` = {v}: {}", doc.trim().trim_end_matches('.'))
            })
            .collect::<Vec<_>>()
            .join("; ");
        rows.push((name, text(alt, "description"), params));
    }
    rows
}

/// Text of a doc comment on one line (rustdoc paragraphs joined).
fn one_line(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cell text: pipes escaped, so a doc comment cannot break the table.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// The meaning of an option, with its choices.
fn meaning(o: &Opt) -> String {
    let mut m = o.doc.clone();
    if !o.choices.is_empty() {
        let list: Vec<String> = o
            .choices
            .iter()
            .map(|(v, d)| if d.is_empty() { format!("`{v}`") } else { format!("`{v}`: {}", d.trim_end_matches('.')) })
            .collect();
        m = format!("{m} One of: {}.", list.join("; "));
    }
    m
}

/// `docs/config.md`: every option of the job config, its default and its meaning.
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "# Job config reference\n\n\
         <!-- Generated from the config types by `starling config-reference > docs/config.md`; \
         a test fails when this file and the code differ. -->\n\n\
         A job is one TOML file. `starling train --print-config` prints every option with its current \
         value and meaning (unset ones commented out), and any flag of `starling train` overrides the \
         file (`starling train --help` names the key each flag sets). Unknown keys are errors, so a \
         misspelt option is never silently ignored.\n",
    );
    for sec in sections() {
        s.push_str(&format!("\n## `[{}]`\n\n{}\n\n| key | default | meaning |\n|---|---|---|\n", sec.path, sec.doc));
        for o in &sec.options {
            let default = o.default.as_deref().map_or("unset".to_string(), |d| format!("`{d}`"));
            s.push_str(&format!("| `{}` | {} | {} |\n", o.key, cell(&default), cell(&meaning(o))));
        }
    }
    let opt_doc = schemars::schema_for!(Optimizer).to_value();
    s.push_str(&format!(
        "\n## `[optimizer]`\n\n{}\n\n| `name` | rule | hyperparameters (default) |\n|---|---|---|\n",
        text(&opt_doc, "description")
    ));
    let default = Optimizer::default().name();
    for (name, doc, params) in optimizer_rows() {
        let shown = if name == default { format!("`{name}` (default)") } else { format!("`{name}`") };
        s.push_str(&format!("| {shown} | {} | {} |\n", cell(&doc), cell(&params)));
    }
    s
}

/// Word-wraps `text` into `# ` comment lines.
fn comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
}

/// `job` as TOML with every option, its meaning as a comment above it; unset options are
/// commented out (`# save = ...`), so the file reads back as the same job.
pub fn commented_toml(job: &JobConfig) -> String {
    let mut values = toml::Value::try_from(job).expect("a JobConfig always serialises");
    super::shortest_floats(&mut values);
    let at = |path: &str, key: &str| {
        path.split('.').try_fold(&values, |v, p| v.get(p)).and_then(|t| t.get(key)).map(ToString::to_string)
    };
    let mut s = String::new();
    for sec in sections() {
        comment(&sec.doc, &mut s);
        s.push_str(&format!("[{}]\n", sec.path));
        for o in &sec.options {
            comment(&meaning(o), &mut s);
            match at(&sec.path, &o.key) {
                Some(v) => s.push_str(&format!("{} = {v}\n", o.key)),
                None => s.push_str(&format!("# {} = (unset)\n", o.key)),
            }
        }
        s.push('\n');
    }
    let rows = optimizer_rows();
    comment(
        &format!(
            "The update rule and its hyperparameters. Rules: {}.",
            rows.iter().map(|(n, _, p)| format!("{n} ({p})")).collect::<Vec<_>>().join("; ")
        ),
        &mut s,
    );
    s.push_str("[optimizer]\n");
    s.push_str(&format!("name = \"{}\"\n", job.optimizer.name()));
    for (p, v) in job.optimizer.hyperparameters() {
        s.push_str(&format!("{p} = {v}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_documented_and_listed() {
        let printed = commented_toml(&JobConfig::default());
        // Every option the config serialises appears, documented.
        for sec in sections() {
            for o in &sec.options {
                assert!(!o.doc.is_empty(), "{}.{} has no doc comment", sec.path, o.key);
            }
        }
        for key in ["save =", "init_model =", "cache_dir =", "batch_size =", "staleness =", "every_steps =", "weight ="]
        {
            assert!(printed.contains(key), "{key} missing from\n{printed}");
        }
        assert_eq!(JobConfig::from_toml(&printed, "printed").unwrap(), JobConfig::default());
        let md = reference_markdown();
        for sec in ["`[cluster]`", "`[checkpoint]`", "`[features.columns]`", "`batch_size`", "`ftrl`"] {
            assert!(md.contains(sec), "{sec} missing from the reference");
        }
    }
}

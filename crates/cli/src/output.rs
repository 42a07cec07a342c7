//! Printing results as a table for people or as JSON for scripts.

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items.iter().map(|i| cell(Some(i))).collect::<Vec<_>>().join(", "),
        Some(Value::Object(o)) if o.contains_key("protocol") => {
            format!("{}:{}", cell(o.get("protocol")), cell(o.get("port")))
        }
        Some(other) => other.to_string(),
    }
}

/// Prints a list with the given columns, or an object as field/value rows.
pub fn print(output: Output, value: &Value, columns: &[&str]) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(value).expect("serializable"));
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    match value {
        Value::Array(items) => {
            table.set_header(columns.to_vec());
            for item in items {
                table.add_row(columns.iter().map(|c| cell(item.get(*c))).collect::<Vec<_>>());
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                table.add_row(vec![k.clone(), cell(Some(v))]);
            }
        }
        Value::Null => return,
        other => {
            println!("{}", cell(Some(other)));
            return;
        }
    }
    println!("{table}");
}

/// Prints a one-line confirmation (or `{}`-style JSON with `ok`).
pub fn done(output: Output, message: &str) {
    if output == Output::Json {
        println!("{}", serde_json::json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
}

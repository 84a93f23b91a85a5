//! JSON text exactly as ZooKeeper's AdminServer writes it: Jackson's `DefaultPrettyPrinter`
//! (`JsonOutputter`). Fields are `"key" : value`, objects indent two spaces per object level, arrays
//! stay on the line of their parent (`[ 1, 2 ]`, `[ {` … `} ]`), empty containers are `{ }` and `[ ]`,
//! doubles print as Java's `Double.toString`, and there is no trailing newline. Tools parse the JSON,
//! so this matters for diffs against the real server more than for clients.

use serde_json::Value;

use crate::admin::monitor::java_double;

/// Renders `value` the way Jackson's default pretty printer does.
pub fn to_jackson_pretty(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn write_value(out: &mut String, value: &Value, object_depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                out.push_str(&java_double(n.as_f64().unwrap_or(f64::NAN)));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[ ]");
                return;
            }
            out.push_str("[ ");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item, object_depth);
            }
            out.push_str(" ]");
        }
        Value::Object(fields) => {
            if fields.is_empty() {
                out.push_str("{ }");
                return;
            }
            out.push('{');
            for (i, (key, field)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                push_indent(out, object_depth + 1);
                write_string(out, key);
                out.push_str(" : ");
                write_value(out, field, object_depth + 1);
            }
            out.push('\n');
            push_indent(out, object_depth);
            out.push('}');
        }
    }
}

fn push_indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_string(out: &mut String, s: &str) {
    // serde_json's escaping matches Jackson's for the characters ZooKeeper's output contains.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn matches_jackson_layout() {
        let value = json!({
            "connections": [{"remote_socket_address": "127.0.0.1:1", "interest_ops": 1}],
            "secure_connections": [],
            "map": {},
            "ids": [1, 2],
            "avg": 3.0,
            "command": "connections",
            "error": null
        });
        assert_eq!(
            to_jackson_pretty(&value),
            "{\n  \"connections\" : [ {\n    \"remote_socket_address\" : \"127.0.0.1:1\",\n    \"interest_ops\" : 1\n  } ],\n  \
             \"secure_connections\" : [ ],\n  \"map\" : { },\n  \"ids\" : [ 1, 2 ],\n  \"avg\" : 3.0,\n  \
             \"command\" : \"connections\",\n  \"error\" : null\n}"
        );
    }
}

//! JSON as CRIU's Python crit prints it: keys in insertion order, and the exact
//! spacing and escaping of Python's `json.dump` (`", "` and `": "` separators,
//! or a 4-space indent; `ensure_ascii`, so every non-ASCII character becomes a
//! `\uXXXX` escape).

use std::fmt::Write;

/// A JSON value whose objects keep their key order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Json>),
    /// An object, keys in order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// An empty object.
    pub fn object() -> Json {
        Json::Object(Vec::new())
    }

    /// Appends a key to an object (no-op on other values).
    pub fn push(&mut self, key: impl Into<String>, value: Json) {
        if let Json::Object(entries) = self {
            entries.push((key.into(), value));
        }
    }

    /// Looks a key up in an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Converts into a serde_json value (for comparisons in tests and tools).
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Json::Null => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            Json::UInt(n) => serde_json::Value::from(*n),
            Json::Int(n) => serde_json::Value::from(*n),
            Json::Str(s) => serde_json::Value::String(s.clone()),
            Json::List(items) => {
                serde_json::Value::Array(items.iter().map(Json::to_serde).collect())
            }
            Json::Object(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_serde()))
                    .collect(),
            ),
        }
    }

    /// Renders like Python's `json.dumps(value)` (`indent=None`) or
    /// `json.dumps(value, indent=4)`.
    pub fn to_python_string(&self, indent: Option<usize>) -> String {
        let mut out = String::new();
        write_value(&mut out, self, indent, 0);
        out
    }
}

fn write_value(out: &mut String, value: &Json, indent: Option<usize>, level: usize) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Json::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Json::Str(s) => write_string(out, s),
        Json::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, i, indent, level + 1);
                write_value(out, item, indent, level + 1);
            }
            close(out, indent, level);
            out.push(']');
        }
        Json::Object(entries) => {
            if entries.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                separator(out, i, indent, level + 1);
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item, indent, level + 1);
            }
            close(out, indent, level);
            out.push('}');
        }
    }
}

fn separator(out: &mut String, index: usize, indent: Option<usize>, level: usize) {
    match indent {
        None => {
            if index > 0 {
                out.push_str(", ");
            }
        }
        Some(width) => {
            if index > 0 {
                out.push(',');
            }
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', width * level));
        }
    }
}

fn close(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(width) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', width * level));
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_matches_python_separators() {
        let mut obj = Json::object();
        obj.push("magic", Json::Str("CORE".into()));
        obj.push(
            "entries",
            Json::List(vec![Json::UInt(1), Json::Int(-2), Json::Bool(true)]),
        );
        obj.push("empty", Json::object());
        assert_eq!(
            obj.to_python_string(None),
            r#"{"magic": "CORE", "entries": [1, -2, true], "empty": {}}"#
        );
    }

    #[test]
    fn indented_matches_python_indent_4() {
        let mut inner = Json::object();
        inner.push("a", Json::List(vec![]));
        let value = Json::List(vec![inner, Json::UInt(3)]);
        assert_eq!(
            value.to_python_string(Some(4)),
            "[\n    {\n        \"a\": []\n    },\n    3\n]"
        );
    }

    #[test]
    fn strings_are_escaped_like_ensure_ascii() {
        let value = Json::Str("a\"b\\c\n\u{1}\u{7f}é😀".into());
        assert_eq!(
            value.to_python_string(None),
            r#""a\"b\\c\n\u0001\u007f\u00e9\ud83d\ude00""#
        );
    }
}

//! A minimal JSON object writer for `--json` summaries (one object, flat or nested; no dependency).

use std::fmt::Write;

/// Builds one JSON object, field by field, in insertion order.
#[derive(Default)]
pub struct JsonObject {
    out: String,
}

impl JsonObject {
    /// An empty object.
    pub fn new() -> JsonObject {
        JsonObject { out: String::from("{") }
    }

    fn key(&mut self, k: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        escape_into(&mut self.out, k);
        self.out.push(':');
    }

    /// Adds a string field.
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        escape_into(&mut self.out, v);
        self
    }

    /// Adds an integer field.
    pub fn u64(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }

    /// Adds a number field (non-finite numbers become null).
    pub fn f64(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.out, "{v}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// Adds a boolean field.
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    /// Adds a nested object.
    pub fn obj(mut self, k: &str, v: JsonObject) -> Self {
        self.key(k);
        self.out.push_str(&v.finish());
        self
    }

    /// Adds an array of objects.
    pub fn array(mut self, k: &str, items: impl IntoIterator<Item = JsonObject>) -> Self {
        self.key(k);
        self.out.push('[');
        for (i, v) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(&v.finish());
        }
        self.out.push(']');
        self
    }

    /// Adds an array of strings.
    pub fn strs<'a>(mut self, k: &str, items: impl IntoIterator<Item = &'a str>) -> Self {
        self.key(k);
        self.out.push('[');
        for (i, v) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            escape_into(&mut self.out, v);
        }
        self.out.push(']');
        self
    }

    /// Adds a field whose value is already JSON text (`null`, a number): the caller vouches for it.
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.out.push_str(json);
        self
    }

    /// Adds every field of `object`, a finished object's text (`{...}`): the caller vouches for it. A job's
    /// summary puts each push's report fields after its own.
    pub fn fields(mut self, object: &str) -> Self {
        let inner = object.trim().strip_prefix('{').and_then(|o| o.strip_suffix('}')).unwrap_or_default();
        if !inner.is_empty() {
            if self.out.len() > 1 {
                self.out.push(',');
            }
            self.out.push_str(inner);
        }
        self
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json() {
        let j = JsonObject::new()
            .str("a\"b", "x\ny\u{1}")
            .u64("n", 5)
            .f64("f", 1.5)
            .f64("nan", f64::NAN)
            .bool("t", true)
            .obj("o", JsonObject::new().u64("z", 0))
            .array("a", [JsonObject::new().u64("i", 1), JsonObject::new()])
            .array("e", [])
            .raw("r", "null")
            .finish();
        assert_eq!(
            j,
            r#"{"a\"b":"x\ny\u0001","n":5,"f":1.5,"nan":null,"t":true,"o":{"z":0},"a":[{"i":1},{}],"e":[],"r":null}"#
        );
    }

    #[test]
    fn fields_of_another_object_follow_in_order() {
        let inner = JsonObject::new().u64("files", 2).str("error", "x").finish();
        assert_eq!(JsonObject::new().str("name", "a").fields(&inner).finish(), r#"{"name":"a","files":2,"error":"x"}"#);
        assert_eq!(JsonObject::new().fields(&inner).u64("z", 1).finish(), r#"{"files":2,"error":"x","z":1}"#);
        assert_eq!(JsonObject::new().u64("z", 1).fields("{}").finish(), r#"{"z":1}"#);
    }
}

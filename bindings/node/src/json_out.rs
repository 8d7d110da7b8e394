//! Batches for JavaScript as one JSON text, which V8's `JSON.parse` turns into objects far
//! faster than napi can build them one property at a time (each `napi_set_named_property`
//! looks its key up in V8's string table, and objects built that way change shape as they
//! grow). A batch of 256 results is one string and one `JSON.parse`; big texts ride beside it.

use napi_derive::napi;

/// A batch for JavaScript: `json` is the JSON text of an array of objects; a long text an object
/// refers to by index (`dataText: i`) is `texts[i]`.
#[napi(object, js_name = "Batch", object_from_js = false)]
pub struct JsBatch {
    /// The objects, as one JSON text.
    pub json: String,
    /// Long texts, by the index the objects give.
    pub texts: Vec<String>,
}

impl JsBatch {
    /// An empty batch: the end.
    pub(crate) fn empty() -> JsBatch {
        JsBatch {
            json: "[]".to_string(),
            texts: Vec::new(),
        }
    }
}

/// Text at most this long that is JSON is written into a batch as it is; longer text, or text
/// that is not JSON, is written as a JSON string for the JS side to parse on its own (so a big
/// result is not checked twice, and text that is not JSON can never break a whole batch).
pub(crate) const INLINE_JSON_MAX: usize = 4096;

/// Whether `text` can go into a batch as it is.
pub(crate) fn inline_json(text: &str) -> bool {
    text.len() <= INLINE_JSON_MAX && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// One JSON object being written at the end of `out`. Keys are the caller's own names (plain
/// ASCII), so they are written without escaping.
pub(crate) struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn begin(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// `"key": "value"`, escaped.
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        queuexec_core::json_string_into(self.key(key), value);
        self
    }

    /// `"key": "value"` when there is a value.
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }

    /// `"key": <json>`: the caller vouches that `json` is one JSON value.
    pub(crate) fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    /// `"key": <number>`.
    pub(crate) fn num(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write as _;
        let out = self.key(key);
        let _ = write!(out, "{value}");
        self
    }

    /// `"key": true|false`.
    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// `"key": <json>` when `text` is short JSON, else `"textKey": <index>`, the text moved to
    /// `texts[index]` (see [`INLINE_JSON_MAX`]): a big text crosses to JavaScript as its own
    /// string, never escaped into the batch and scanned again there.
    pub(crate) fn json_or_text(
        &mut self,
        key: &str,
        text_key: &str,
        text: String,
        texts: &mut Vec<String>,
    ) -> &mut Self {
        if inline_json(&text) {
            self.raw(key, &text)
        } else {
            self.num(text_key, texts.len());
            texts.push(text);
            self
        }
    }

    /// `"key": {…}`: the object to write as the value (end it before going on with this one).
    pub(crate) fn nested(&mut self, key: &str) -> Object<'_> {
        Object::begin(self.key(key))
    }

    pub(crate) fn end(self) {
        self.out.push('}');
    }

    /// Leaves the object unfinished: the caller cuts it off (a batch drops an event it cannot
    /// write).
    pub(crate) fn abandon(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_back_to_what_was_written() {
        let mut texts = Vec::new();
        let mut out = String::from("[");
        let mut o = Object::begin(&mut out);
        o.str("kind", "result")
            .str("id", "a \"quoted\"\nid\u{1}")
            .opt_str("none", None)
            .num("attempts", 3)
            .num("callId", 9_007_199_254_740_991u64)
            .bool("automatic", true)
            .json_or_text(
                "data",
                "dataText",
                r#"{"x":[1,2.5,"é"]}"#.into(),
                &mut texts,
            );
        o.end();
        out.push(',');
        let big = format!("[{}]", "1,".repeat(INLINE_JSON_MAX) + "1");
        let mut o = Object::begin(&mut out);
        o.json_or_text("data", "dataText", "not json".into(), &mut texts)
            .json_or_text("more", "moreText", big.clone(), &mut texts);
        let mut inner = o.nested("inner");
        inner.num("n", 1.5);
        inner.end();
        o.end();
        out.push(']');
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("one JSON text");
        assert_eq!(
            parsed,
            serde_json::json!([
                {"kind": "result", "id": "a \"quoted\"\nid\u{1}", "attempts": 3,
                 "callId": 9_007_199_254_740_991u64, "automatic": true,
                 "data": {"x": [1, 2.5, "é"]}},
                {"dataText": 0, "moreText": 1, "inner": {"n": 1.5}},
            ])
        );
        assert_eq!(texts, ["not json".to_string(), big]);
    }
}

//! Fuzz target: arbitrary bytes into both rule parsers (as text when valid UTF-8, and
//! as JSON when serde_json reads them). Whatever parses must print and parse back to
//! the same rule, in both forms, and the two forms must agree.
#![no_main]

use candor_segments::{from_json, parse_text, to_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(rule) = parse_text(s) {
            let text = rule.to_string();
            assert_eq!(parse_text(&text).as_ref(), Ok(&rule), "text round trip");
            assert_eq!(from_json(&to_json(&rule)).as_ref(), Ok(&rule), "json of text");
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(rule) = from_json(&v) {
            assert_eq!(from_json(&to_json(&rule)).as_ref(), Ok(&rule), "json round trip");
            assert_eq!(parse_text(&rule.to_string()).as_ref(), Ok(&rule), "text of json");
        }
    }
});

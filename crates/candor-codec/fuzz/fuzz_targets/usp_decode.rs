//! Fuzz target: arbitrary bytes into the US Privacy parser; what parses must
//! format back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = candor_codec::usp::decode(s) {
            assert_eq!(candor_codec::usp::encode(&u), s);
        }
    }
});

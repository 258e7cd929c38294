//! Fuzz target: arbitrary bytes into the TC string decoder (and whatever
//! decodes, back through the encoder). Only panics and hangs count as bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(tc) = candor_codec::tcf::decode(s) {
            let _ = candor_codec::tcf::encode_unchecked(&tc.model);
        }
    }
});

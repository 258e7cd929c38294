//! Fuzz target: arbitrary bytes into the GPP decoder (and back through the
//! encoder when decoding succeeds).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(g) = candor_codec::gpp::decode(s) {
            let _ = candor_codec::gpp::encode(&g);
        }
    }
});

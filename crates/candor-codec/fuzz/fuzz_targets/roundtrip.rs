//! Fuzz target: whatever decodes must encode, and decoding that encoding must
//! give the same model back (decode ∘ encode is the identity on decoded models).
#![no_main]

use candor_codec::{gpp, tcf, Error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tc) = tcf::decode(s) {
        let encoded = tcf::encode_unchecked(&tc.model).expect("a decoded model encodes");
        let again = tcf::decode(&encoded).expect("our own encoding decodes");
        assert_eq!(again.model, tc.model);
    }
    if let Ok(g) = gpp::decode(s) {
        match gpp::encode(&g) {
            // A tcfeuv2 section that breaks the TCF 2.2 policy is refused by design.
            Err(Error::Policy(_)) => {}
            Err(e) => panic!("decoded GPP string failed to encode: {e}"),
            Ok(encoded) => {
                let again = gpp::decode(&encoded).expect("our own encoding decodes");
                assert_eq!(again, g);
            }
        }
    }
});

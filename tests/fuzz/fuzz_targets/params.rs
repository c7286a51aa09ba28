//! The name-value pair decoder (`record::pairs`) on a whole PARAMS stream,
//! then what the app would get: `environ::prepare` and the `R` frame.
//!
//! Input: one selector byte (which site.toml: see `site_for`), then the
//! PARAMS stream as it stands once its records are joined.
#![no_main]

use fcgi_shim_fuzz::{fastcgi_pairs, prepare_and_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    if let Some(pairs) = fastcgi_pairs(stream) {
        prepare_and_frame(&pairs, selector, b"body");
    }
});

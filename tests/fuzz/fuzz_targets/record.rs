//! The FastCGI record decoder (`record::decode`, `decode_begin`) on any
//! bytes, and the management replies built from a record's content.
#![no_main]

use fcgi_shim::record::{self, Decoded};
use fcgi_shim_fuzz::{check_management, check_partial, check_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match record::decode(data) {
        Ok(Decoded::Record(h)) => {
            let content = check_record(data, h);
            match record::decode_begin(content) {
                Ok(b) => {
                    assert_eq!(content.len(), 8);
                    assert_eq!(b.role, u16::from_be_bytes([content[0], content[1]]));
                    assert_eq!(b.flags, content[2]);
                }
                Err(record::Error::BadBeginBody(n)) => {
                    assert!(n == content.len() && n != 8)
                }
                Err(e) => panic!("decode_begin returned {e:?}"),
            }
            check_management(h.kind, content);
            // Display is what reaches the log; it must not panic either.
            let _ = record::Error::PairOverrun {
                offset: content.len(),
            }
            .to_string();
        }
        Ok(Decoded::Partial { needed }) => check_partial(data, needed),
        Err(record::Error::BadVersion(v)) => {
            assert_eq!(Some(&v), data.first());
            assert_ne!(v, record::VERSION_1);
            assert!(!record::Error::BadVersion(v).to_string().is_empty());
        }
        Err(e) => panic!("decode returned {e:?}"),
    }
});

//! The site.toml loader (`config::parse`) on any text: a site or an error
//! that names the file and a line inside it, never a panic.
#![no_main]

use std::path::Path;

use fcgi_shim::config;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/home/u/www/site.toml";

fuzz_target!(|data: &[u8]| {
    // Not valid UTF-8 is refused by load() (read_to_string) before parse;
    // lossy keeps the rest of such an input useful to the fuzzer.
    let text = String::from_utf8_lossy(data);
    let file = Path::new(FILE);
    match config::parse(file, &text) {
        Ok(site) => {
            assert_eq!(site.file, file);
            assert!(site.wsgi_app.is_some() || site.settings_module.is_some());
            for p in site
                .search_path
                .iter()
                .chain(&site.watch)
                .chain(&site.log_file)
            {
                assert!(p.is_absolute(), "relative path {p:?} not resolved");
            }
            if let Some(s) = &site.script_name {
                assert!(
                    s.is_empty() || (s.starts_with('/') && !s.ends_with('/')),
                    "{s:?}"
                );
            }
            for (k, v) in &site.env {
                assert!(!k.is_empty() && !k.contains(['=', '\0']) && !v.contains('\0'));
            }
            for n in site.trusted_proxies.iter().chain(&site.debug_allow) {
                let max = if n.addr.is_ipv4() { 32 } else { 128 };
                assert!(n.prefix <= max);
                // A block holds its own address. Not for IPv4-mapped IPv6
                // blocks: contains() maps the address to IPv4 but not the
                // block, so "::ffff:10.0.0.1" matches nothing (reported).
                let mapped = match n.addr {
                    std::net::IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
                    _ => false,
                };
                if !mapped {
                    assert!(n.contains(n.addr), "{n:?} does not hold its own address");
                }
            }
        }
        Err(e) => {
            assert_eq!(e.file, file);
            if let Some(line) = e.line {
                let lines = text.split('\n').count();
                assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            }
            assert!(!e.message.is_empty());
            let shown = e.to_string();
            assert!(shown.starts_with(FILE), "{shown}");
        }
    }
});

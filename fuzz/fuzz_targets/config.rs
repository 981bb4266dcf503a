//! Configuration files: any TOML the operator writes is either refused with a message or
//! becomes a configuration that validates consistently.
#![no_main]

use edgetracker_native::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The binary's own path: unknown keys refused, then validated. Validation reads no file:
    // the paths a configuration names are opened at start.
    let Ok(config) = Config::parse(text) else {
        return;
    };
    assert!(config.trusted_proxies().is_ok());
    config
        .policy()
        .validate()
        .expect("a valid config has a valid policy");
});

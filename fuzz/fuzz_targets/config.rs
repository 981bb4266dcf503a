//! Configuration files: any TOML the operator writes is either refused with a message or
//! becomes a configuration that validates consistently.
#![no_main]

use edgetracker_native::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = toml::from_str::<Config>(text) else {
        return;
    };
    // Validation opens the access files it names: keep the fuzzer off the file system (a path
    // like /dev/zero would hang it, not the tracker's parsing).
    config.access.list_file = String::new();
    config.access.passkeys_file = String::new();
    if config.validate().is_ok() {
        assert!(config.trusted_proxies().is_ok());
        config
            .policy()
            .validate()
            .expect("a valid config has a valid policy");
    }
});

//! XBT's `xbt_tracker.conf`: any text a site's file holds is read line by line, every line either
//! taken or reported with its number, and the settings stay usable.
#![no_main]

use edgetracker::xbt::settings::XbtSettings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut settings = XbtSettings::default();
    let problems = settings.read_conf(&text);
    let lines = text.lines().count();
    assert!(problems.iter().all(|(line, _)| (1..=lines).contains(line)));
    assert!(!settings.ports().is_empty());
});

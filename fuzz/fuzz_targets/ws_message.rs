//! WebTorrent tracker messages: any text frame is a message or a refusal, and everything the
//! tracker writes from it is JSON a client can read.
#![no_main]

use edgetracker::protocol::ws::{self, ClientMessage, ScrapeCounts};
use libfuzzer_sys::fuzz_target;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("the tracker writes JSON")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ws::parse(text, 10) {
        Err(e) => assert!(json(&ws::write_error(&e))["failure reason"].is_string()),
        Ok(ClientMessage::Announce(a)) => {
            assert!(a.offers.len() <= 10);
            for o in &a.offers {
                let sent = json(&ws::write_offer(&a.info_hash, &a.peer_id, &o.offer_id, &o.offer));
                assert_eq!(sent["offer"]["sdp"].as_str(), Some(o.offer.sdp.as_str()));
            }
            if let Some(answer) = &a.answer {
                json(&ws::write_answer(&a.info_hash, &a.peer_id, &answer.offer_id, &answer.answer));
            }
        }
        Ok(ClientMessage::Scrape(s)) => {
            let files: Vec<_> = s
                .info_hashes
                .iter()
                .map(|h| (*h, ScrapeCounts::default()))
                .collect();
            json(&ws::write_scrape_reply(&files));
        }
    }
});

use proptest::prelude::*;
use serde_json::{Value, json};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

fn bin(bytes: &[u8]) -> String {
    to_binary_string(bytes)
}

fn sdp(kind: &str, text: &str) -> Sdp {
    Sdp {
        kind: kind.into(),
        sdp: text.into(),
    }
}

/// An announce as `bittorrent-tracker`'s websocket client sends it (lib/client/websocket-tracker.js:
/// binary-string ids, numbers, an event, `numwant` and the offers).
fn client_announce(offers: usize) -> Value {
    let offers: Vec<Value> = (0..offers)
        .map(|i| {
            json!({
                "offer": {"type": "offer", "sdp": format!("v=0\r\no=- {i} 2 IN IP4 127.0.0.1\r\n")},
                "offer_id": format!("{i:040x}"),
            })
        })
        .collect();
    json!({
        "action": "announce",
        "info_hash": bin(&[0xab; 20]),
        "peer_id": bin(b"-WW0207-\x00\x01\xff\x80abcdefgh"),
        "uploaded": 0,
        "downloaded": 0,
        "left": 1234,
        "event": "started",
        "numwant": offers.len(),
        "offers": offers,
    })
}

#[test]
fn a_clients_announce_parses() {
    let text = client_announce(3).to_string();
    let ClientMessage::Announce(a) = parse(&text, 10).unwrap() else {
        panic!("an announce")
    };
    assert_eq!(a.info_hash, InfoHash([0xab; 20]));
    assert_eq!(&a.peer_id.0, b"-WW0207-\x00\x01\xff\x80abcdefgh");
    assert_eq!(a.event, Event::Started);
    assert_eq!(
        (a.left, a.numwant, a.seeding()),
        (Some(1234), Some(3), false)
    );
    assert_eq!(a.offers.len(), 3);
    assert_eq!(a.offers[2].offer_id, format!("{:040x}", 2));
    assert_eq!(a.offers[2].offer.kind, "offer");
    assert!(a.offers[2].offer.sdp.starts_with("v=0\r\no=- 2 "));
    assert_eq!(a.answer, None);
}

#[test]
fn binary_strings_are_one_byte_a_character() {
    // JSON.stringify writes code points 0x80-0xff as UTF-8 and control characters as \u escapes;
    // both mean one byte each.
    let text = r#"{"action":"scrape","info_hash":"\u0000\u0001ÿ\u00fe0123456789abcdef"}"#;
    let ClientMessage::Scrape(s) = parse(text, 10).unwrap() else {
        panic!("a scrape")
    };
    let mut want = [0u8; 20];
    want[..4].copy_from_slice(&[0, 1, 0xff, 0xfe]);
    want[4..].copy_from_slice(b"0123456789abcdef");
    assert_eq!(s.info_hashes, vec![InfoHash(want)]);
    assert_eq!(binary_string::<2>("Ā0"), None, "a code point past 255");
    assert_eq!(binary_string::<2>("abc"), None, "too long");
    assert_eq!(binary_string::<2>("a"), None, "too short");
}

#[test]
fn what_clients_send_loosely_is_accepted() {
    for (event, want) in [
        (json!("update"), Event::None),
        (json!("empty"), Event::None),
        (json!("paused"), Event::None),
        (json!("completed"), Event::Completed),
        (json!("stopped"), Event::Stopped),
        (Value::Null, Event::None),
    ] {
        let mut m = client_announce(0);
        m["event"] = event;
        m["left"] = json!(0.0);
        m["numwant"] = json!("5");
        m["action"] = json!(1);
        let ClientMessage::Announce(a) = parse(&m.to_string(), 10).unwrap() else {
            panic!("an announce")
        };
        assert_eq!((a.event, a.seeding(), a.numwant), (want, true, Some(5)));
    }
    let mut m = client_announce(0);
    m["left"] = Value::Null;
    m.as_object_mut().unwrap().remove("numwant");
    m.as_object_mut().unwrap().remove("offers");
    let ClientMessage::Announce(a) = parse(&m.to_string(), 10).unwrap() else {
        panic!("an announce")
    };
    assert_eq!((a.left, a.numwant, a.offers.len()), (None, None, 0));
    let scrape_all = parse(r#"{"action":2}"#, 10).unwrap();
    assert_eq!(
        scrape_all,
        ClientMessage::Scrape(Scrape {
            info_hashes: vec![]
        })
    );
}

#[test]
fn an_answer_names_its_peer_and_offer() {
    let mut m = client_announce(0);
    m["answer"] = json!({"type": "answer", "sdp": "v=0\r\n"});
    m["to_peer_id"] = json!(bin(&[7; 20]));
    m["offer_id"] = json!("f".repeat(40));
    let ClientMessage::Announce(a) = parse(&m.to_string(), 10).unwrap() else {
        panic!("an announce")
    };
    assert_eq!(
        a.answer,
        Some(Answer {
            to_peer_id: PeerId([7; 20]),
            offer_id: "f".repeat(40),
            answer: sdp("answer", "v=0\r\n"),
        })
    );
    m.as_object_mut().unwrap().remove("to_peer_id");
    assert_eq!(
        parse(&m.to_string(), 10).unwrap_err().reason(),
        "an answer needs to_peer_id and offer_id"
    );
}

/// Every way a message can be wrong gets its own reason, never a panic.
#[test]
fn malformed_messages_say_what_is_wrong() {
    let announce = |f: &dyn Fn(&mut Value)| {
        let mut m = client_announce(2);
        f(&mut m);
        m.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "malformed message"),
        ("[1,2]".into(), "malformed message"),
        ("{\"action\":\"announce\"".into(), "malformed message"),
        (r#"{"action":"connect"}"#.into(), "unknown action"),
        (r#"{"info_hash":"x"}"#.into(), "unknown action"),
        (
            announce(&|m| m["info_hash"] = json!("short")),
            "info_hash must be 20 bytes",
        ),
        (
            announce(&|m| m["info_hash"] = json!(["a"])),
            "info_hash must be 20 bytes",
        ),
        (
            announce(&|m| m["info_hash"] = json!(12)),
            "malformed message",
        ),
        (
            announce(&|m| m["peer_id"] = json!("Ā".repeat(20))),
            "peer_id must be 20 bytes",
        ),
        (
            announce(&|m| {
                m.as_object_mut().unwrap().remove("peer_id");
            }),
            "peer_id must be 20 bytes",
        ),
        (
            announce(&|m| m["event"] = json!("seeding")),
            "unknown event",
        ),
        (
            announce(&|m| m["left"] = json!(-1)),
            "left must be a number of bytes",
        ),
        (
            announce(&|m| m["left"] = json!("lots")),
            "malformed message",
        ),
        (announce(&|m| m["left"] = json!([1])), "malformed message"),
        (
            announce(&|m| m["numwant"] = json!(-3)),
            "numwant must be a count",
        ),
        (announce(&|m| m["offers"] = json!("x")), "malformed message"),
        (
            announce(&|m| m["offers"][0]["offer"] = json!("sdp")),
            "malformed message",
        ),
        (
            announce(&|m| m["offers"][0]["offer_id"] = json!("")),
            "offer_id must be 1 to 64 bytes",
        ),
        (
            announce(&|m| m["offers"][1]["offer_id"] = json!("x".repeat(65))),
            "offer_id must be 1 to 64 bytes",
        ),
        (
            announce(&|m| m["offers"] = json!(vec![m["offers"][0].clone(); 11])),
            "too many offers",
        ),
        (
            r#"{"action":"scrape","info_hash":["x"]}"#.into(),
            "info_hash must be 20 bytes",
        ),
        ("x".repeat(MAX_MESSAGE + 1), "message longer than"),
    ];
    for (text, want) in cases {
        let err = parse(&text, 10).unwrap_err();
        assert!(
            err.reason().starts_with(want),
            "{:?}: {:?}, wanted {want:?}",
            &text[..text.len().min(80)],
            err.reason()
        );
        // The reply is a JSON object with the reason, and the torrent once it was read.
        let reply: Value = serde_json::from_str(&write_error(&err)).unwrap();
        assert_eq!(reply["failure reason"], json!(err.reason()));
        if let WsError::Invalid {
            info_hash: Some(h), ..
        } = err
        {
            assert_eq!(reply["info_hash"], json!(bin(&h.0)));
            assert_eq!(reply["action"], json!("announce"));
        }
    }
}

#[test]
fn replies_are_what_clients_read() {
    let hash = InfoHash(*b"\x00\x7f\x80\xff0123456789abcdef");
    let reply: Value = serde_json::from_str(&write_announce_reply(&hash, 120, 3, 4)).unwrap();
    assert_eq!(
        reply,
        json!({"action": "announce", "interval": 120, "info_hash": bin(&hash.0), "complete": 3, "incomplete": 4})
    );
    let offer = Offer {
        offer_id: "1".repeat(40),
        offer: sdp("offer", "v=0\r\n"),
    };
    let from = PeerId([0x99; 20]);
    let forwarded: Value =
        serde_json::from_str(&write_offer(&hash, &from, &offer.offer_id, &offer.offer)).unwrap();
    assert_eq!(
        forwarded,
        json!({"action": "announce", "info_hash": bin(&hash.0), "peer_id": bin(&from.0),
               "offer_id": "1".repeat(40), "offer": {"type": "offer", "sdp": "v=0\r\n"}})
    );
    let answer = Answer {
        to_peer_id: PeerId([1; 20]),
        offer_id: "2".repeat(40),
        answer: sdp("answer", "v=0\r\n"),
    };
    let forwarded: Value = serde_json::from_str(&write_answer(
        &hash,
        &from,
        &answer.offer_id,
        &answer.answer,
    ))
    .unwrap();
    assert_eq!(
        forwarded,
        json!({"action": "announce", "info_hash": bin(&hash.0), "peer_id": bin(&from.0),
               "offer_id": "2".repeat(40), "answer": {"type": "answer", "sdp": "v=0\r\n"}})
    );
    let counts = ScrapeCounts {
        complete: 1,
        incomplete: 2,
        downloaded: 3,
    };
    let scrape: Value = serde_json::from_str(&write_scrape_reply(&[(hash, counts)])).unwrap();
    assert_eq!(
        scrape,
        json!({"action": "scrape", "files": {bin(&hash.0): {"complete": 1, "incomplete": 2, "downloaded": 3}}})
    );
}

fn sdp_text() -> impl Strategy<Value = String> {
    // SDP is text with CRLFs; throw in quotes, backslashes and non-ASCII for the escaping.
    proptest::string::string_regex("[ -~\r\n\"\\\\é€]{0,200}").unwrap()
}

proptest! {
    /// What a client writes with JSON.stringify, the tracker reads back exactly; what the
    /// tracker forwards carries the same bytes, ids and SDP.
    #[test]
    fn round_trip(
        hash in any::<[u8; 20]>(),
        peer in any::<[u8; 20]>(),
        left in proptest::option::of(0u64..(1 << 53)),
        offers in proptest::collection::vec(("[0-9a-f]{1,64}", sdp_text()), 0..10),
    ) {
        let m = json!({
            "action": "announce",
            "info_hash": bin(&hash),
            "peer_id": bin(&peer),
            "left": left,
            "offers": offers.iter().map(|(id, s)| json!({"offer_id": id, "offer": {"type": "offer", "sdp": s}})).collect::<Vec<_>>(),
        });
        let ClientMessage::Announce(a) = parse(&m.to_string(), 10).unwrap() else {
            panic!("an announce")
        };
        prop_assert_eq!(a.info_hash.0, hash);
        prop_assert_eq!(a.peer_id.0, peer);
        prop_assert_eq!(a.left, left);
        prop_assert_eq!(a.offers.len(), offers.len());
        for (o, (id, s)) in a.offers.iter().zip(&offers) {
            prop_assert_eq!(&o.offer_id, id);
            prop_assert_eq!(&o.offer.sdp, s);
            let forwarded: Value = serde_json::from_str(&write_offer(&a.info_hash, &a.peer_id, &o.offer_id, &o.offer)).unwrap();
            prop_assert_eq!(&forwarded["info_hash"], &json!(bin(&hash)));
            prop_assert_eq!(&forwarded["peer_id"], &json!(bin(&peer)));
            prop_assert_eq!(&forwarded["offer"]["sdp"], &json!(s));
        }
    }

    /// Any text at all: a message or an error, never a panic.
    #[test]
    fn any_text_is_parsed_or_refused(text in ".{0,400}") {
        if let Err(e) = parse(&text, 10) {
            let reply: Value = serde_json::from_str(&write_error(&e)).unwrap();
            prop_assert!(reply["failure reason"].is_string());
        }
    }

    /// Messages that are almost right: a client announce with one field swapped for any JSON.
    #[test]
    fn any_field_value_is_parsed_or_refused(
        field in prop::sample::select(vec!["action", "info_hash", "peer_id", "event", "left", "numwant", "offers", "answer", "to_peer_id", "offer_id"]),
        value in prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,30}".prop_map(Value::from),
            Just(json!([])),
            Just(json!({})),
            Just(json!([{"offer_id": "x", "offer": {"type": "offer", "sdp": ""}}])),
            Just(json!({"type": "answer", "sdp": "x"})),
        ],
    ) {
        let mut m = client_announce(1);
        m[field] = value;
        let _ = parse(&m.to_string(), 10);
    }
}

/// The client's offer ids are 20 random bytes as a binary string: control characters and code
/// points past 127 included. They come back out exactly as they went in.
#[test]
fn binary_offer_ids_are_forwarded_unchanged() {
    let id = bin(&[
        0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', 0x1f, 9, 10, 13, 0xc3, 0xa9, 200, 100, 50, 25, 12, 6,
        3,
    ]);
    let mut m = client_announce(1);
    m["offers"][0]["offer_id"] = json!(id);
    let ClientMessage::Announce(a) = parse(&m.to_string(), 10).unwrap() else {
        panic!("an announce")
    };
    assert_eq!(a.offers[0].offer_id, id);
    let sent: Value = serde_json::from_str(&write_offer(
        &a.info_hash,
        &a.peer_id,
        &a.offers[0].offer_id,
        &a.offers[0].offer,
    ))
    .unwrap();
    assert_eq!(sent["offer_id"], json!(id));
    let answer = Answer {
        to_peer_id: PeerId([1; 20]),
        offer_id: id.clone(),
        answer: sdp("answer", "x"),
    };
    let sent: Value = serde_json::from_str(&write_answer(
        &a.info_hash,
        &a.peer_id,
        &answer.offer_id,
        &answer.answer,
    ))
    .unwrap();
    assert_eq!(sent["offer_id"], json!(id));
}

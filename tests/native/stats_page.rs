//! The stats page as people and their tools see it: content negotiation, access restriction, and
//! the HTML page rendered by a real headless Chromium, whose screenshot must show the chart.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use edgetracker::protocol::http::announce_query;
use edgetracker::protocol::types::Event;

fn content_type(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[test]
fn browsers_get_html_tools_get_json_or_prometheus() {
    let t = tracker();
    let a = http_addr(&t, false);
    let (_, head, _) = http_get(a, "/stats", &[]);
    assert_eq!(content_type(&head), "application/json");
    let (_, head, body) = http_get(
        a,
        "/stats",
        &[("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    );
    assert_eq!(content_type(&head), "text/html; charset=utf-8");
    let page = String::from_utf8(body).unwrap();
    assert!(
        page.starts_with("<!doctype html>") && page.contains("<svg") && !page.contains("<script")
    );
    for external in ["src=", "<link", "href=\"http", "url(", "@import"] {
        assert!(
            !page.contains(external),
            "external asset ({external}) in the page"
        );
    }
    let (_, head, _) = http_get(a, "/stats?format=json", &[("Accept", "text/html")]);
    assert_eq!(content_type(&head), "application/json");
    let (_, head, _) = http_get(a, "/stats?format=prometheus", &[("Accept", "text/html")]);
    assert!(content_type(&head).starts_with("text/plain; version=0.0.4"));
    t.shutdown();
}

#[test]
fn stats_can_be_restricted_to_addresses_or_a_token() {
    let t = tracker_with(|c| {
        c.stats.allow = vec![ip("::1")];
        c.stats.token = "s3cret-token".into();
    });
    let (v4, v6) = (http_addr(&t, false), http_addr(&t, true));
    for target in ["/stats", "/metrics", "/stats?token=wrong"] {
        let (status, _, body) = http_get(v4, target, &[]);
        assert_eq!(status, 403, "{target}");
        assert!(String::from_utf8_lossy(&body).contains("the stats are not public"));
    }
    assert_eq!(http_get(v4, "/stats?token=s3cret-token", &[]).0, 200);
    assert_eq!(
        http_get(v4, "/metrics", &[("Authorization", "Bearer s3cret-token")]).0,
        200
    );
    assert_eq!(
        http_get(v6, "/stats", &[]).0,
        200,
        "::1 is on the allow list"
    );
    // A browser that came with the token can follow the page's links to the other forms.
    let html = [("Accept", "text/html")];
    let page = String::from_utf8(http_get(v4, "/stats?token=s3cret-token", &html).2).unwrap();
    let link = "?format=prometheus&amp;token=s3cret-token";
    assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
    let (status, head, _) = http_get(v4, &format!("/stats{}", link.replace("&amp;", "&")), &[]);
    assert_eq!(status, 200);
    assert!(content_type(&head).starts_with("text/plain; version=0.0.4"));
    // One let in by address gets no token written into the page.
    let page = String::from_utf8(http_get(v6, "/stats", &html).2).unwrap();
    assert!(!page.contains("s3cret-token"));
    // The tracker itself stays open.
    let q = announce_query(&announce(hash(1), 1, 0, Event::Started));
    assert_eq!(http_get(v4, &format!("/announce?{q}"), &[]).0, 200);
    t.shutdown();
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Counts pixels within a small distance of `rgb`.
fn pixels_near(png_path: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| p.len() >= 3 && (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 40))
        .count()
}

fn hex_rgb(colour: &str) -> [u8; 3] {
    let c = colour.trim_start_matches('#');
    std::array::from_fn(|i| u8::from_str_radix(&c[2 * i..2 * i + 2], 16).unwrap())
}

#[test]
fn headless_chromium_renders_the_page_with_its_chart() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("EDGETRACKER_REQUIRE_CHROMIUM").is_none(),
            "{CHROMIUM} is missing"
        );
        eprintln!("skipped: {CHROMIUM} not installed (tests/run.sh installs it)");
        return;
    }
    let t = tracker_with(|c| c.stats.history_interval = 1);
    let a = http_addr(&t, false);
    // Growing swarms over a few seconds, so the chart has a few samples to draw.
    for round in 1..=4u16 {
        for port in 0..round * 5 {
            let q = announce_query(&announce(hash(round as u8), 1000 + port, 0, Event::Started));
            assert_eq!(http_get(a, &format!("/announce?{q}"), &[]).0, 200);
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    let dir = std::env::temp_dir().join(format!("edgetracker-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("stats.png");
    let status = Command::new("timeout")
        .args([
            "60",
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("--window-size=900,700")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("http://{a}/stats"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "chromium: {status}");
    let torrents = pixels_near(&shot, hex_rgb(edgetracker_native::page::TORRENTS_COLOUR));
    let peers = pixels_near(&shot, hex_rgb(edgetracker_native::page::PEERS_COLOUR));
    // A 3-pixel line across the 640-pixel plot is well over 1000 pixels; the legend alone ~30.
    assert!(
        torrents > 1000 && peers > 1000,
        "chart lines visible: torrents {torrents} px, peers {peers} px"
    );
    // Keep the screenshot where a person can look at it.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stats-page.png");
    std::fs::copy(&shot, &keep).unwrap();
    eprintln!("screenshot: {}", keep.display());
    t.shutdown();
    std::fs::remove_dir_all(dir).ok();
}

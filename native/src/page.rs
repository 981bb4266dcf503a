//! The stats page for people: one self-contained HTML document (inline CSS, an inline SVG chart
//! of torrents and peers over the last hour, no scripts, no external assets), and the history
//! the chart is drawn from.
//!
//! Owns presentation only; numbers come from [`crate::stats`] and the store's totals.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use edgetracker::store::Totals;

/// One point of the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Seconds since the tracker started.
    pub at: u64,
    pub torrents: u64,
    pub peers: u64,
}

/// The last hour of samples (at most `capacity`), oldest first.
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            samples: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(2),
        }
    }

    pub fn record(&self, sample: Sample) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == self.capacity {
            s.pop_front();
        }
        s.push_back(sample);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const PAD: f64 = 40.0;
pub const TORRENTS_COLOUR: &str = "#1f6fd1";
pub const PEERS_COLOUR: &str = "#d1301f";

/// An SVG line chart of torrents and peers. With no samples yet it says so instead.
pub fn chart(samples: &[Sample]) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="torrents and peers over the last hour">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff" stroke="#ccc"/>"##
    );
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        svg.push_str(r##"<text x="50%" y="50%" text-anchor="middle" fill="#888">no samples yet</text></svg>"##);
        return svg;
    };
    let max = samples
        .iter()
        .map(|s| s.torrents.max(s.peers))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let span = (last.at - first.at).max(1) as f64;
    let x = |at: u64| PAD + (at - first.at) as f64 / span * (WIDTH - 2.0 * PAD);
    let y = |v: u64| HEIGHT - PAD - v as f64 / max * (HEIGHT - 2.0 * PAD);
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#999"/>"##,
        b = HEIGHT - PAD,
        r = WIDTH - PAD,
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="12" fill="#555" text-anchor="end">{}</text>"##,
        PAD - 4.0,
        PAD + 4.0,
        max as u64
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="12" fill="#555" text-anchor="end">0</text>"##,
        PAD - 4.0,
        HEIGHT - PAD + 4.0
    );
    for (colour, value) in [
        (
            TORRENTS_COLOUR,
            (|s: &Sample| s.torrents) as fn(&Sample) -> u64,
        ),
        (PEERS_COLOUR, |s: &Sample| s.peers),
    ] {
        let points: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at), y(value(s))))
            .collect();
        // A single sample is drawn as a short flat line so it is visible.
        let points = if points.len() == 1 {
            format!("{} {:.1},{:.1}", points[0], WIDTH - PAD, y(value(last)))
        } else {
            points.join(" ")
        };
        let _ = write!(
            svg,
            r#"<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="3"/>"#
        );
    }
    let seconds = last.at - first.at;
    let span = if seconds < 120 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds / 60)
    };
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="12" fill="#555" text-anchor="end">last {span}</text></svg>"##,
        WIDTH - PAD,
        HEIGHT - PAD / 3.0
    );
    svg
}

fn row(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
}

/// Escapes text for an HTML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page. `requests` rows are (protocol, family, action, requests, errors); `token`,
/// when the viewer came with one, is kept in the links to the other forms.
pub fn html(
    totals: &Totals,
    uptime: u64,
    requests: &[(&str, &str, &str, u64, u64)],
    rate_limited: u64,
    samples: &[Sample],
    token: Option<&str>,
) -> String {
    let keep = token.map_or(String::new(), |t| format!("&amp;token={}", escape(t)));
    let mut body = String::new();
    body.push_str("<table>");
    row(&mut body, "torrents", totals.torrents);
    row(&mut body, "peers", totals.peers());
    row(
        &mut body,
        "seeders (IPv4 / IPv6)",
        format!("{} / {}", totals.seeders_v4, totals.seeders_v6),
    );
    row(
        &mut body,
        "leechers (IPv4 / IPv6)",
        format!("{} / {}", totals.leechers_v4, totals.leechers_v6),
    );
    row(
        &mut body,
        "uptime",
        format!("{}h {:02}m", uptime / 3600, uptime / 60 % 60),
    );
    row(&mut body, "rate limited", rate_limited);
    body.push_str("</table><h2>Requests</h2><table><tr><th>protocol</th><th>family</th><th>action</th><th>requests</th><th>errors</th></tr>");
    for (p, f, a, n, e) in requests.iter().filter(|r| r.3 > 0) {
        let _ = write!(
            body,
            "<tr><td>{p}</td><td>{f}</td><td>{a}</td><td>{n}</td><td>{e}</td></tr>"
        );
    }
    body.push_str("</table>");
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgetracker stats</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: left; }}
.key span {{ display: inline-block; width: 1em; height: 0.3em; vertical-align: middle; margin: 0 0.3em 0 1em; }}
</style></head>
<body><h1>edgetracker</h1>
<h2>Torrents and peers, last hour</h2>
<p class="key"><span style="background:{TORRENTS_COLOUR}"></span>torrents<span style="background:{PEERS_COLOUR}"></span>peers</p>
{chart}
<h2>Now</h2>
{body}
<p>Also as <a href="?format=json{keep}">JSON</a> and <a href="?format=prometheus{keep}">Prometheus</a> text.</p>
</body></html>
"##,
        chart = chart(samples),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_samples() {
        let h = History::new(3);
        for at in 0..5 {
            h.record(Sample {
                at,
                torrents: at,
                peers: 2 * at,
            });
        }
        let at: Vec<u64> = h.samples().iter().map(|s| s.at).collect();
        assert_eq!(at, vec![2, 3, 4]);
    }

    #[test]
    fn chart_draws_both_series_or_says_it_has_nothing() {
        assert!(chart(&[]).contains("no samples yet"));
        let samples = [
            Sample {
                at: 0,
                torrents: 1,
                peers: 4,
            },
            Sample {
                at: 60,
                torrents: 2,
                peers: 8,
            },
        ];
        let svg = chart(&samples);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(TORRENTS_COLOUR) && svg.contains(PEERS_COLOUR));
        // The peaks: 8 peers at the top of the plot area, at the right edge.
        assert!(
            svg.contains(&format!("{:.1},{:.1}", WIDTH - PAD, PAD)),
            "{svg}"
        );
        assert!(chart(&samples[..1]).contains("<polyline"));
    }
}

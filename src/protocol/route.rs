//! Which tracker endpoint a request names: `/announce` and `/scrape`, each also behind a passkey
//! (`/<passkey>/announce`, BEP 27 private trackers), over HTTP paths and BEP 41 UDP URL data.
//!
//! Owns recognising paths; what a passkey grants is [`crate::access`]'s business, and every other
//! path (stats, health) is the home's.

/// What a request path names: the endpoint, and the passkey in front of it if any
/// (`/announce`, `/<passkey>/announce`; likewise scrape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub endpoint: Endpoint,
    pub passkey: Option<&'a [u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Announce,
    Scrape,
}

/// Recognises tracker paths; anything else is `None` (the home serves or refuses it).
pub fn route(path: &[u8]) -> Option<Route<'_>> {
    let endpoint = |name: &[u8]| match name {
        b"announce" => Some(Endpoint::Announce),
        b"scrape" => Some(Endpoint::Scrape),
        _ => None,
    };
    let rest = path.strip_prefix(b"/")?;
    match rest.iter().position(|&b| b == b'/') {
        None => Some(Route {
            endpoint: endpoint(rest)?,
            passkey: None,
        }),
        Some(slash) => {
            let (key, name) = (&rest[..slash], &rest[slash + 1..]);
            if key.is_empty() || name.contains(&b'/') {
                return None;
            }
            Some(Route {
                endpoint: endpoint(name)?,
                passkey: Some(key),
            })
        }
    }
}

/// The passkey of a UDP announce, from its BEP 41 URL data (the path and query of the tracker
/// URL, e.g. `/<passkey>/announce?x=1`).
pub fn udp_passkey(url_data: &[u8]) -> Option<&[u8]> {
    let path = url_data.split(|&b| b == b'?').next().unwrap_or(&[]);
    route(path).and_then(|r| r.passkey)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn routes_and_udp_url_data() {
        assert_eq!(
            route(b"/announce"),
            Some(Route {
                endpoint: Endpoint::Announce,
                passkey: None
            })
        );
        assert_eq!(
            route(b"/k3y/scrape"),
            Some(Route {
                endpoint: Endpoint::Scrape,
                passkey: Some(&b"k3y"[..])
            })
        );
        for path in [
            &b"/"[..],
            b"/stats",
            b"//announce",
            b"/a/b/announce",
            b"announce",
            b"/k/other",
        ] {
            assert_eq!(route(path), None, "{}", String::from_utf8_lossy(path));
        }
        assert_eq!(udp_passkey(b"/k3y/announce?x=1"), Some(&b"k3y"[..]));
        assert_eq!(udp_passkey(b"/announce"), None);
        assert_eq!(udp_passkey(b""), None);
    }
}

//! What an announce credits to its user: XBT's rule.
//!
//! Traffic is credited as the difference between two announces of the same peer (peer id, in
//! its torrent) by the same user: the first announce of a peer credits nothing (whatever it
//! reports), nor does one whose counter went down (a client restarted without `stopped`), nor
//! one from another user than the peer's last; a `stopped` announce's difference is credited
//! before the peer leaves. Both counters move together: when either is refused, neither counts.

/// A peer's counters as its announce reports them (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub uploaded: u64,
    pub downloaded: u64,
}

/// A peer's last announce, as the tracker remembers it for the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastAnnounce {
    pub uid: u32,
    pub traffic: Traffic,
}

/// What an announce of `uid` reporting `now` credits, after the same peer's `last` announce.
pub fn credit(last: Option<LastAnnounce>, uid: u32, now: Traffic) -> Traffic {
    match last {
        Some(last)
            if last.uid == uid
                && now.uploaded >= last.traffic.uploaded
                && now.downloaded >= last.traffic.downloaded =>
        {
            Traffic {
                uploaded: now.uploaded - last.traffic.uploaded,
                downloaded: now.downloaded - last.traffic.downloaded,
            }
        }
        _ => Traffic::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn t(uploaded: u64, downloaded: u64) -> Traffic {
        Traffic {
            uploaded,
            downloaded,
        }
    }

    #[test]
    fn xbts_cases() {
        assert_eq!(
            credit(None, 1, t(500, 700)),
            t(0, 0),
            "a first announce credits nothing"
        );
        let last = Some(LastAnnounce {
            uid: 1,
            traffic: t(100, 200),
        });
        assert_eq!(credit(last, 1, t(150, 260)), t(50, 60));
        assert_eq!(
            credit(last, 2, t(150, 260)),
            t(0, 0),
            "another user's peer id"
        );
        assert_eq!(credit(last, 1, t(90, 900)), t(0, 0), "a counter went down");
        assert_eq!(credit(last, 1, t(100, 200)), t(0, 0));
    }

    proptest! {
        /// Over one peer's announces whose counters only grow, the credits add up to the last
        /// counters less the first; whatever the announces, a credit never exceeds what was
        /// reported.
        #[test]
        fn credits_add_up_to_the_growth(steps in proptest::collection::vec((0u64..1 << 40, 0u64..1 << 40), 1..20)) {
            let mut now = t(0, 0);
            let mut last: Option<LastAnnounce> = None;
            let mut credited = t(0, 0);
            let mut first = None;
            for (up, down) in steps {
                now = t(now.uploaded + up, now.downloaded + down);
                first.get_or_insert(now);
                let c = credit(last, 7, now);
                prop_assert!(c.uploaded <= now.uploaded && c.downloaded <= now.downloaded);
                credited = t(credited.uploaded + c.uploaded, credited.downloaded + c.downloaded);
                last = Some(LastAnnounce { uid: 7, traffic: now });
            }
            let first = first.unwrap();
            prop_assert_eq!(credited, t(now.uploaded - first.uploaded, now.downloaded - first.downloaded));
        }
    }
}

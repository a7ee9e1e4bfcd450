//! Fills: one upstream fetch however many clients ask at once, bytes
//! checked before the last one reaches anyone, the size bound kept.

use futures_util::future::join_all;

use super::{config, nar, narinfo, Answer, Harness, Upstream};
use crate::metrics::FillKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_upstream_fetch_that_everyone_gets() {
    let up = Upstream::start().await;
    let (nar_path, bytes) = nar(10, 300_000);
    let (info_path, text) = narinfo("shared", &nar_path, &bytes);
    up.set(&nar_path, Answer::Ok(bytes.clone()));
    up.set(&info_path, Answer::Ok(text.clone().into()));
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    let kinds = [
        (&nar_path, bytes.clone(), FillKind::Nar),
        (&info_path, text.into(), FillKind::Document),
    ];
    for (path, want, kind) in kinds {
        up.close_gate();
        let url = format!("/{path}");
        let clients = join_all((0..8).map(|_| h.get(&url)));
        // The gate opens once the leader asked upstream and the seven
        // others joined its fill.
        let release = async {
            up.wait_for_requests(path, 1).await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while h.server.metrics.coalesced(kind) < 7 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the clients never joined"
                );
                // Polling for the event, not waiting for time to pass.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            up.open();
        };
        let (replies, ()) = tokio::join!(clients, release);
        assert_eq!(up.requests(path), 1, "{path}: one fetch");
        let mut statuses: Vec<&str> = replies.iter().map(|r| r.cache.as_str()).collect();
        statuses.sort();
        assert_eq!(
            statuses,
            [["COALESCED"; 7].as_slice(), &["MISS"]].concat(),
            "{path}"
        );
        for r in &replies {
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.body.as_ref(), Some(&want), "{path}");
        }
        assert_eq!(h.get(&format!("/{path}")).await.cache, "HIT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_cut_bytes_fail_every_client_and_are_not_stored() {
    let up = Upstream::start().await;
    let (nar_path, bytes) = nar(11, 200_000);
    let mut wrong = bytes.to_vec();
    wrong[100_000] ^= 1;
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    for answer in [Answer::Ok(wrong.into()), Answer::Cut(bytes.clone())] {
        up.set(&nar_path, answer);
        let r = h.get(&format!("/{nar_path}")).await;
        // A 502 (the fill failed before any byte) or a transfer that broke
        // off: never a clean 200.
        assert!(
            !(r.status == 200 && r.body.is_some()),
            "{} {:?}",
            r.status,
            r.body.map(|b| b.len())
        );
        assert!(!h.server.store.contains(&nar_path));
    }
    up.set(&nar_path, Answer::Ok(bytes.clone()));
    let r = h.get(&format!("/{nar_path}")).await;
    assert_eq!((r.status, r.body), (200, Some(bytes)));
    assert!(h.server.store.contains(&nar_path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_bound_evicts_the_least_recently_used() {
    let up = Upstream::start().await;
    let nars: Vec<_> = (0..4).map(|i| nar(20 + i, 400_000)).collect();
    for (path, bytes) in &nars {
        up.set(path, Answer::Ok(bytes.clone()));
    }
    // Room for two of them and a little more.
    let h = Harness::start(config(&up.url()), 1_000_000).await;
    for (i, (path, _)) in nars.iter().take(2).enumerate() {
        assert_eq!(h.get(&format!("/{path}")).await.status, 200, "{i}");
        h.clock.advance(std::time::Duration::from_secs(1));
    }
    // The first is read again: the second is now the least recently used.
    assert_eq!(h.get(&format!("/{}", nars[0].0)).await.cache, "HIT");
    h.clock.advance(std::time::Duration::from_secs(1));
    assert_eq!(h.get(&format!("/{}", nars[2].0)).await.cache, "MISS");
    let store = &h.server.store;
    assert!(store.contains(&nars[0].0) && store.contains(&nars[2].0));
    assert!(!store.contains(&nars[1].0), "evicted");
    assert!(store.stats().bytes <= 1_000_000);
    assert_eq!(
        h.get(&format!("/{}", nars[1].0)).await.cache,
        "MISS",
        "fetched again"
    );
}

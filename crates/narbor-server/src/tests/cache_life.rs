//! The cache life of a document as the clock moves: fresh, expired, stale,
//! negative.

use std::time::Duration;

use super::{config, nar, narinfo, Answer, Harness, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narinfo_is_fresh_for_its_ttl_then_fetched_again() {
    let up = Upstream::start().await;
    let (nar_path, bytes) = nar(1, 100);
    let (path, text) = narinfo("hello", &nar_path, &bytes);
    up.set(&path, Answer::Ok(text.clone().into()));
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (200, "MISS"));
    assert_eq!(r.body.as_deref(), Some(text.as_bytes()));
    h.clock.advance(Duration::from_secs(7 * 86400 - 1));
    assert_eq!(h.get(&format!("/{path}")).await.cache, "HIT");
    assert_eq!(up.requests(&path), 1);
    h.clock.advance(Duration::from_secs(1));
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (200, "EXPIRED"));
    assert_eq!(up.requests(&path), 2);
    assert_eq!(
        h.get(&format!("/{path}")).await.cache,
        "HIT",
        "stored again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_narinfo_is_served_stale_while_the_upstream_fails() {
    let up = Upstream::start().await;
    let (nar_path, bytes) = nar(2, 100);
    let (path, text) = narinfo("stale", &nar_path, &bytes);
    up.set(&path, Answer::Ok(text.clone().into()));
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    assert_eq!(h.get(&format!("/{path}")).await.status, 200);
    h.clock.advance(Duration::from_secs(8 * 86400));
    up.set(&path, Answer::Status(503));
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (200, "STALE"));
    assert_eq!(r.body.as_deref(), Some(text.as_bytes()));
    // Gone upstream (404): the stale copy goes too.
    up.set(&path, Answer::Status(404));
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (404, "MISS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_is_remembered_for_the_negative_ttl_and_then_asked_again() {
    let up = Upstream::start().await;
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    let path = "0123456789abcdfghijklmnpqrsvwxyz.narinfo";
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (404, "MISS"));
    h.clock.advance(Duration::from_secs(59));
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (404, "NEGATIVE"));
    assert_eq!(up.requests(path), 1, "not asked while remembered");
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.get(&format!("/{path}")).await.cache, "MISS");
    assert_eq!(up.requests(path), 2);
    // NARs too.
    let (nar_path, _) = nar(3, 10);
    assert_eq!(h.get(&format!("/{nar_path}")).await.cache, "MISS");
    assert_eq!(h.get(&format!("/{nar_path}")).await.cache, "NEGATIVE");
    assert_eq!(up.requests(&nar_path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_upstreams_stored_documents_never_expire() {
    let mut offline = config("http://127.0.0.1:9");
    offline.upstreams.clear();
    let h = Harness::start(offline, 1 << 30).await;
    let (nar_path, bytes) = nar(4, 100);
    let (path, text) = narinfo("kept", &nar_path, &bytes);
    h.server.store.put_document(&path, text.as_bytes()).unwrap();
    h.clock.advance(Duration::from_secs(365 * 86400));
    let r = h.get(&format!("/{path}")).await;
    assert_eq!((r.status, r.cache.as_str()), (200, "HIT"));
    let missing = "0123456789abcdfghijklmnpqrsvwxyz.narinfo";
    let r = h.get(&format!("/{missing}")).await;
    assert_eq!((r.status, r.cache.as_str()), (404, "MISS"), "nothing asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_nobody_asked_for_within_inactive_is_evicted_by_the_upkeep() {
    let up = Upstream::start().await;
    let (kept, kept_bytes) = nar(5, 1000);
    let (idle, idle_bytes) = nar(6, 1000);
    up.set(&kept, Answer::Ok(kept_bytes));
    up.set(&idle, Answer::Ok(idle_bytes));
    let mut c = config(&up.url());
    c.inactive = Duration::from_secs(3600);
    let h = Harness::start(c, 1 << 30).await;
    assert_eq!(h.get(&format!("/{kept}")).await.status, 200);
    assert_eq!(h.get(&format!("/{idle}")).await.status, 200);
    h.clock.advance(Duration::from_secs(3000));
    assert_eq!(h.get(&format!("/{kept}")).await.cache, "HIT", "asked again");
    assert_eq!(h.server.upkeep().await, Ok(0), "nothing idle an hour yet");
    h.clock.advance(Duration::from_secs(700));
    assert_eq!(h.server.upkeep().await, Ok(1));
    assert!(h.server.store.contains(&kept));
    assert!(!h.server.store.contains(&idle), "evicted");
    assert_eq!(h.get(&format!("/{idle}")).await.cache, "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_store_refused_a_nar_it_is_asked_again_once_the_back_off_passed() {
    let up = Upstream::start().await;
    let h = Harness::start(config(&up.url()), 1 << 30).await;
    assert!(h.server.store_accepting());
    h.server.store_refused("the disk is full");
    assert!(!h.server.store_accepting());
    h.clock.advance(Duration::from_secs(4));
    assert!(!h.server.store_accepting(), "still backing off");
    h.clock.advance(Duration::from_secs(1));
    assert!(
        h.server.store_accepting(),
        "five seconds later it tries again"
    );
}

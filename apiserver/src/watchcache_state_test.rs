use super::*;
use crate::selectors::Selectable;
use serde_json::json;

fn obj(name: &str, rv: Revision, app: &str) -> Obj {
    Arc::new(CachedObject::new(
        "Pod",
        &json!({"metadata": {"name": name, "resourceVersion": rv.to_string(), "labels": {"app": app}}}),
    ))
}

fn put(key: &str, rv: Revision, app: &str) -> Change {
    Change {
        revision: rv,
        key: key.into(),
        object: Some(obj(key, rv, app)),
    }
}

fn del(key: &str, rv: Revision) -> Change {
    Change {
        revision: rv,
        key: key.into(),
        object: None,
    }
}

const PODS: &str = "/registry/core/pods/";

fn state(capacity: usize) -> CacheState {
    let mut s = CacheState::new([PODS, "/registry/core/configmaps/", PODS], capacity);
    s.replace(Vec::new(), 10);
    s
}

fn web() -> Arc<WatchFilter> {
    Arc::new(WatchFilter {
        prefix: PODS.into(),
        client: "test".into(),
        matches: Box::new(|o: &CachedObject| o.label("app") == Some("web")),
    })
}

#[test]
fn storage_prefix_of_keys() {
    assert_eq!(storage_prefix_of("/registry/core/pods/ns/a"), Some(PODS));
    assert_eq!(
        storage_prefix_of("/registry/core/nodes/n1"),
        Some("/registry/core/nodes/")
    );
    assert_eq!(storage_prefix_of("/registry/core"), None);
    assert_eq!(storage_prefix_of("/other/x/y/z"), None);
}

#[test]
fn apply_keeps_objects_ring_and_revision() {
    let mut s = state(3);
    assert_eq!(s.bucket(PODS), Some(0), "one bucket per distinct prefix");
    s.apply(vec![
        put("/registry/core/pods/d/a", 11, "web"),
        put("/registry/core/pods/d/b", 12, "db"),
    ]);
    s.apply(vec![
        del("/registry/core/pods/d/a", 13),
        del("/registry/core/pods/d/zz", 14),
    ]);
    s.advance(15);
    assert_eq!(s.revision(), 15);
    assert_eq!(s.object_count(), 1);
    let page = s.list(0, PODS, PODS, 0, |_| true);
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.revision, 15);
    // Ring of 3: the 4th change evicts the first; resuming before it is 410.
    s.apply(vec![put("/registry/core/pods/d/c", 16, "web")]);
    let (tx, _rx) = mpsc::channel(8);
    let err = s
        .register(0, web(), WatchStart::After(10), tx.clone())
        .unwrap_err();
    assert_eq!(
        err,
        RegisterError::TooOld {
            requested: 10,
            oldest: 11
        }
    );
    let reg = s.register(0, web(), WatchStart::After(11), tx).unwrap();
    let Initial::Replay(items) = reg.initial else {
        panic!("a replay")
    };
    let seen: Vec<(Revision, EventKind)> = items
        .iter()
        .map(|i| (i.event.event.revision, i.kind))
        .collect();
    assert_eq!(seen, [(13, EventKind::Deleted), (16, EventKind::Added)]);
}

#[test]
fn selectors_turn_changes_into_added_and_deleted() {
    let mut s = state(100);
    let (tx, mut rx) = mpsc::channel(8);
    s.register(0, web(), WatchStart::Snapshot, tx).unwrap();
    let k = "/registry/core/pods/d/a";
    s.apply(vec![
        put(k, 11, "db"),
        put(k, 12, "web"),
        put(k, 13, "web"),
        put(k, 14, "db"),
        del(k, 15),
    ]);
    let mut kinds = Vec::new();
    while let Ok(item) = rx.try_recv() {
        kinds.push(item.kind);
        if item.kind == EventKind::Deleted {
            // DELETED carries the previous state at the change's revision.
            let o = item.event.object(item.kind).unwrap();
            assert_eq!(o["metadata"]["resourceVersion"], "14");
            assert_eq!(o["metadata"]["labels"]["app"], "web");
        }
    }
    assert_eq!(
        kinds,
        [EventKind::Added, EventKind::Modified, EventKind::Deleted]
    );
}

#[test]
fn full_watchers_are_closed_others_keep_going() {
    let mut s = state(100);
    let (slow_tx, mut slow_rx) = mpsc::channel(1);
    let (fast_tx, mut fast_rx) = mpsc::channel(100);
    s.register(0, web(), WatchStart::Snapshot, slow_tx).unwrap();
    s.register(0, web(), WatchStart::Snapshot, fast_tx).unwrap();
    let stats = s.apply(
        (0..5)
            .map(|i| put(&format!("/registry/core/pods/d/p{i}"), 11 + i, "web"))
            .collect(),
    );
    assert_eq!(stats.closed_slow, 1);
    assert_eq!(s.watcher_count(), 1);
    let mut n = 0;
    while fast_rx.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, 5);
    assert!(slow_rx.try_recv().is_ok());
    assert!(matches!(
        slow_rx.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
    // A watcher whose client went away is dropped but not counted as slow.
    let (gone_tx, gone_rx) = mpsc::channel(100);
    s.register(0, web(), WatchStart::Snapshot, gone_tx).unwrap();
    drop(gone_rx);
    let stats = s.apply(vec![put("/registry/core/pods/d/q", 20, "web")]);
    assert_eq!(stats.closed_slow, 0);
    assert_eq!(s.watcher_count(), 1);
    fast_rx.try_recv().expect("the fast watcher saw q");
}

#[test]
fn pages_and_exact_revisions() {
    let mut s = state(100);
    s.apply(
        (0..5)
            .map(|i| put(&format!("/registry/core/pods/d/p{i}"), 11 + i, "web"))
            .collect(),
    );
    let page = s.list(0, PODS, PODS, 2, |_| true);
    assert_eq!(page.items.len(), 2);
    let next = page.next_start.unwrap();
    assert_eq!(next, "/registry/core/pods/d/p1\0");
    assert_eq!(page.remaining_keys, 3, "p2, p3, p4 follow");
    let rest = s.list(0, PODS, &next, 0, |_| true);
    assert_eq!(rest.items.len(), 3);
    assert!(rest.next_start.is_none());
    assert_eq!(rest.remaining_keys, 0);
    assert_eq!(s.list(0, PODS, PODS, 4, |_| true).remaining_keys, 1);
    // A filter that leaves the page short of `limit` cuts nothing.
    let filtered = s.list(0, PODS, PODS, 1, |o| o.label("app") == Some("none"));
    assert!(filtered.items.is_empty());
    assert_eq!(filtered.remaining_keys, 0);
    assert!(s.can_serve_at(0, 15));
    assert!(!s.can_serve_at(0, 14), "p4 changed after 14");
    s.apply(vec![put("/registry/core/configmaps/d/x", 16, "")]);
    assert!(
        s.can_serve_at(0, 16),
        "a configmap change leaves pods as they were"
    );
    let (tx, _rx) = mpsc::channel(8);
    s.register(0, web(), WatchStart::Snapshot, tx).unwrap();
    assert_eq!(s.replace(Vec::new(), 20), 1, "a relist closes watchers");
}

#[test]
fn a_bucket_added_later_starts_from_its_listed_objects_and_follows_changes() {
    const THINGS: &str = "/registry/x.example.com/things/";
    let mut s = state(3);
    // Before the bucket exists its keys are not cached.
    s.apply(vec![put("/registry/x.example.com/things/d/a", 11, "web")]);
    assert!(!s.caches("/registry/x.example.com/things/d/a"));
    assert_eq!(s.revision(), 11);
    // Added with what the store held at revision 11.
    let a = "/registry/x.example.com/things/d/a".to_string();
    s.add_bucket(THINGS, vec![(a.clone(), obj(&a, 11, "web"))]);
    let b = s.bucket(THINGS).unwrap();
    assert!(s.can_serve_at(b, 11));
    s.apply(vec![put("/registry/x.example.com/things/d/b", 12, "db")]);
    let page = s.list(b, THINGS, THINGS, 0, |_| true);
    let names: Vec<String> = page
        .items
        .iter()
        .filter_map(|o| {
            Some(
                o.to_value()
                    .pointer("/metadata/name")?
                    .as_str()?
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![a.as_str(), "/registry/x.example.com/things/d/b"]
    );
    // Adding it again changes nothing.
    s.add_bucket(THINGS, Vec::new());
    assert_eq!(s.list(b, THINGS, THINGS, 0, |_| true).items.len(), 2);
}

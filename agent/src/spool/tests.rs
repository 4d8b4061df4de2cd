//! The spool on a real directory: order, restarts, claims, damaged files, limits, keys.

use deskside_proto::msg::agent::AgentNotice;

use super::*;

fn notice(key: &str) -> Delivery {
    Delivery {
        key: key.to_owned(),
        notice: AgentNotice::SupportCode {
            code: "123-456".into(),
            expires_at_secs: 1,
        },
    }
}

fn open(dir: &Path) -> Spool {
    Spool::open(dir).unwrap_or_else(|e| panic!("open: {e}"))
}

#[test]
fn items_survive_a_restart_in_order_and_go_once_removed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let spool = open(dir.path());
    for k in ["a1", "b2", "c3"] {
        spool
            .put(&notice(k), false)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(spool);
    let spool = open(dir.path());
    assert_eq!(spool.usage().0, 3);
    let first = spool.next().map(|d| d.key);
    assert_eq!(first.as_deref(), Some("a1"));
    // Claimed: the next call hands out the following item, not the same one.
    assert_eq!(spool.next().map(|d| d.key).as_deref(), Some("b2"));
    spool.release("a1");
    assert_eq!(spool.next().map(|d| d.key).as_deref(), Some("a1"));
    spool.remove("a1").unwrap_or_else(|e| panic!("{e}"));
    spool.remove("b2").unwrap_or_else(|e| panic!("{e}"));
    drop(spool);
    let spool = open(dir.path());
    assert_eq!(spool.usage().0, 1);
    assert_eq!(spool.next().map(|d| d.key).as_deref(), Some("c3"));
}

#[test]
fn a_claimed_put_is_left_to_its_caller() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let spool = open(dir.path());
    spool
        .put(&notice("direct"), true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(spool.next().is_none());
    spool.release("direct");
    assert_eq!(spool.next().map(|d| d.key).as_deref(), Some("direct"));
}

#[test]
fn damaged_files_are_moved_aside_and_leftovers_removed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let garbage = dir.path().join(format!("{:020}-bad1{SUFFIX}", 1));
    fs::write(&garbage, b"\xff\xff\xff\xff not bincode").unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.path().join("00000000000000000002-x.delivery.tmp");
    fs::write(&tmp, b"half").unwrap_or_else(|e| panic!("{e}"));
    fs::write(dir.path().join("notes.txt"), b"not ours").unwrap_or_else(|e| panic!("{e}"));
    let spool = open(dir.path());
    assert!(!tmp.exists(), "an incomplete write is removed");
    spool
        .put(&notice("good"), false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spool.next().map(|d| d.key).as_deref(), Some("good"));
    assert!(
        dir.path()
            .join(CORRUPT_DIR)
            .join(garbage.file_name().unwrap_or_default())
            .exists()
    );
    assert!(dir.path().join("notes.txt").exists());
    assert_eq!(spool.usage().0, 1);
}

#[test]
fn a_full_spool_refuses_with_a_reason_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let spool = open(dir.path());
    spool.lock().bytes = MAX_SPOOL_BYTES;
    let refused = spool.put(&notice("late"), false);
    assert!(
        matches!(&refused, Err(SpoolError::Full { .. }))
            && refused
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains("spool is full")),
        "{refused:?}"
    );
    assert!(spool.room().is_err());
    assert_eq!(spool.usage().0, 0);
}

#[test]
fn bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let spool = open(dir.path());
    assert!(spool.put(&notice("../../etc/passwd"), false).is_err());
    assert!(spool.put(&notice(""), false).is_err());
    assert_eq!(parse_name("1-ok.delivery"), Some((1, "ok")));
    assert_eq!(parse_name("x-ok.delivery"), None);
    assert_eq!(parse_name("1-a/b.delivery"), None);
}

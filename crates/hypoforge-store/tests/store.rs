//! The store on real SQLite files.

use hypoforge_store::*;

fn key(hash: &str, seed: u64) -> TrialKey {
    TrialKey {
        hash: hash.into(),
        protocol: "p1".into(),
        seed,
        task: "iris".into(),
    }
}

fn hypothesis(hash: &str) -> HypothesisRecord {
    HypothesisRecord {
        hash: hash.into(),
        kind: "activation".into(),
        name: format!("h{hash}"),
        source: "fn f() {}".into(),
        provenance: "{}".into(),
    }
}

fn entry(hash: &str, ordinal: u32) -> Entry {
    Entry {
        kind: "activation".into(),
        round: 0,
        ordinal,
        hash: hash.into(),
        verdict: "valid".into(),
        detail: String::new(),
    }
}

#[test]
fn a_store_survives_reopening_with_everything_in_it() {
    let dir = tempfile::tempdir().expect("succeeds");
    let path = dir.path().join("runs.db");
    {
        let store = Store::open(&path).expect("succeeds");
        let run = store
            .create_run("rounds = 1", 1_700_000_000)
            .expect("succeeds");
        store
            .add_entry(run, &hypothesis("aa"), &entry("aa", 0))
            .expect("succeeds");
        store
            .put_result(run, "done/activation", "1")
            .expect("succeeds");
    }
    let store = Store::open_existing(&path).expect("succeeds");
    let runs = store.runs().expect("succeeds");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].config, "rounds = 1");
    assert_eq!(runs[0].state, RunState::Running);
    assert_eq!(
        store.entries(runs[0].id, None).expect("succeeds"),
        vec![entry("aa", 0)]
    );
    assert_eq!(
        store.hypothesis("aa").expect("succeeds"),
        Some(hypothesis("aa"))
    );
    assert_eq!(
        store
            .result(runs[0].id, "done/activation")
            .expect("succeeds")
            .as_deref(),
        Some("1")
    );
    store
        .set_run_state(runs[0].id, RunState::Done)
        .expect("succeeds");
    assert_eq!(
        store.run(runs[0].id).expect("succeeds").state,
        RunState::Done
    );
    assert!(matches!(store.run(99), Err(StoreError::NoRun(99))));
}

#[test]
fn trials_round_trip_bit_for_bit_including_non_finite_losses() {
    let dir = tempfile::tempdir().expect("succeeds");
    let store = Store::open(&dir.path().join("s.db")).expect("succeeds");
    let nan = f64::from_bits(0x7ff8_0000_dead_beef);
    let cases = [
        TrialRecord::Finished {
            val_loss: 0.1 + 0.2,
            val_accuracy: Some(2.0 / 3.0),
        },
        TrialRecord::Finished {
            val_loss: nan,
            val_accuracy: None,
        },
        TrialRecord::Finished {
            val_loss: f64::INFINITY,
            val_accuracy: Some(-0.0),
        },
        TrialRecord::Failed {
            cause: "trap: out of fuel".into(),
        },
    ];
    for (seed, record) in cases.iter().enumerate() {
        store
            .put_trial(&key("h", seed as u64), record)
            .expect("succeeds");
    }
    for (seed, record) in cases.iter().enumerate() {
        let got = store
            .trial(&key("h", seed as u64))
            .expect("succeeds")
            .expect("succeeds");
        match (&got, record) {
            (
                TrialRecord::Finished {
                    val_loss: a,
                    val_accuracy: x,
                },
                TrialRecord::Finished {
                    val_loss: b,
                    val_accuracy: y,
                },
            ) => {
                assert_eq!(a.to_bits(), b.to_bits());
                assert_eq!(x.map(f64::to_bits), y.map(f64::to_bits));
            }
            _ => assert_eq!(&got, record),
        }
    }
    assert_eq!(store.trial(&key("h", 9)).expect("succeeds"), None);
    assert_eq!(store.trial(&key("other", 0)).expect("succeeds"), None);
}

#[test]
fn a_trial_is_stored_once_per_key() {
    let dir = tempfile::tempdir().expect("succeeds");
    let store = Store::open(&dir.path().join("s.db")).expect("succeeds");
    let first = TrialRecord::Failed {
        cause: "first".into(),
    };
    store.put_trial(&key("h", 0), &first).expect("succeeds");
    store
        .put_trial(
            &key("h", 0),
            &TrialRecord::Failed {
                cause: "second".into(),
            },
        )
        .expect("succeeds");
    assert_eq!(store.trial(&key("h", 0)).expect("succeeds"), Some(first));
    assert_eq!(store.trial_count().expect("succeeds"), 1);
}

#[test]
fn a_second_writer_is_refused_until_the_first_lets_go() {
    let dir = tempfile::tempdir().expect("succeeds");
    let path = dir.path().join("s.db");
    let a = Store::open(&path).expect("succeeds");
    let b = Store::open(&path).expect("succeeds");
    let lock = a.lock_for_writing().expect("succeeds");
    let err = b.lock_for_writing().expect_err("fails");
    let message = err.to_string();
    assert!(matches!(err, StoreError::Busy { .. }), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // Readers are never blocked by the writer.
    assert!(b.runs().expect("succeeds").is_empty());
    drop(lock);
    b.lock_for_writing().expect("succeeds");
}

#[test]
fn a_missing_folder_or_file_gets_a_message_that_says_what_to_do() {
    let dir = tempfile::tempdir().expect("succeeds");
    let err = Store::open(&dir.path().join("nope/s.db")).expect_err("fails");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = Store::open_existing(&dir.path().join("s.db")).expect_err("fails");
    assert!(err.to_string().contains("hypoforge run"), "{err}");
    assert!(!dir.path().join("s.db").exists());
}

#[test]
fn a_read_only_store_is_refused_clearly_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("succeeds");
    let path = dir.path().join("s.db");
    {
        let store = Store::open(&path).expect("succeeds");
        store.create_run("x", 1).expect("succeeds");
    }
    let before = std::fs::read(&path).expect("succeeds");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("succeeds");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).expect("succeeds");
    // Root ignores permissions; the check is only meaningful for other users.
    let root = std::fs::write(dir.path().join("probe"), b"").is_ok();
    let outcome = Store::open(&path).and_then(|s| s.create_run("y", 2).map(|_| s));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("succeeds");
    if root {
        eprintln!("running as root: permissions are not enforced, skipping the refusal check");
        return;
    }
    let err = outcome.expect_err("fails");
    assert!(
        matches!(err, StoreError::ReadOnly { .. } | StoreError::Open { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("s.db"), "{err}");
    assert_eq!(std::fs::read(&path).expect("succeeds"), before);
}

#[test]
fn a_store_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("succeeds");
    let path = dir.path().join("s.db");
    drop(Store::open(&path).expect("succeeds"));
    bump_schema_version(&path);
    let err = Store::open(&path).expect_err("fails");
    assert!(matches!(err, StoreError::Schema { found: 99, .. }), "{err}");
}

/// Set the schema version to 99 in the file's header (offset 60, big-endian), which is what
/// `PRAGMA user_version` reads; closing the last connection checkpointed the WAL into the file.
fn bump_schema_version(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).expect("succeeds");
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(path, bytes).expect("succeeds");
}

//! The storage engines as an outside caller sees them: only the public API of
//! `cluster::storage`. The full conformance suite lives next to the engines
//! (`cluster/src/storage/conformance.rs`); this checks the public surface:
//! choosing an engine by name, sharing it as `Arc<dyn Engine>` across
//! threads, error types usable with `?` and `Box<dyn Error + Send + Sync>`.

use std::error::Error;
use std::sync::Arc;

use cluster::storage::{
    open_engine, Durability, Engine, EngineKind, MemoryEngine, SledEngine, StorageError,
};

fn assert_error<E: Error + Send + Sync + 'static>() {}

#[test]
fn errors_are_ordinary_errors() {
    assert_error::<StorageError>();
    assert_error::<cluster::storage::ParseEngineKindError>();
}

fn exercise(engine: Arc<dyn Engine>) -> Result<(), Box<dyn Error + Send + Sync>> {
    engine.meta_put("node_id", b"n1")?;
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || -> Result<(), StorageError> {
                for i in 0..50u8 {
                    engine.put(&[t, i], &[i])?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread panicked")?;
    }
    assert_eq!(engine.count()?, 200);
    let page = engine.scan_from(&[2], 3)?;
    assert_eq!(
        page,
        vec![
            (vec![2, 0], vec![0]),
            (vec![2, 1], vec![1]),
            (vec![2, 2], vec![2])
        ]
    );
    engine.clear()?;
    assert_eq!(engine.count()?, 0);
    assert_eq!(engine.meta_get("node_id")?.as_deref(), Some(&b"n1"[..]));
    engine.flush()?;
    Ok(())
}

#[test]
fn every_kind_by_name() -> Result<(), Box<dyn Error + Send + Sync>> {
    for name in ["memory", "sled"] {
        let dir = tempfile::tempdir()?;
        let kind: EngineKind = name.parse()?;
        let engine = open_engine(
            kind,
            dir.path(),
            Durability::Periodic {
                flush_every_ms: 100,
            },
        )?;
        assert_eq!(engine.name(), name);
        exercise(engine)?;
    }
    Ok(())
}

#[test]
fn concrete_engines_are_usable_directly() -> Result<(), Box<dyn Error + Send + Sync>> {
    exercise(Arc::new(MemoryEngine::new()))?;
    let dir = tempfile::tempdir()?;
    exercise(Arc::new(SledEngine::open(
        dir.path(),
        Durability::EveryWrite,
        Some(8 << 20),
    )?))?;
    Ok(())
}

#[test]
fn bad_engine_name_lists_valid_values() {
    let err = "bdb".parse::<EngineKind>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown storage engine \"bdb\" (valid values: sled, memory, aof)"
    );
}

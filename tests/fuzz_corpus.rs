//! Replays every checked-in fuzz input (`fuzz/corpus/<target>/*`) and every crash artifact
//! (`fuzz/artifacts/<target>/*`) through the target bodies of `simdnorm::fuzz`, on stable:
//! each must pass the contract checks (a failure panics with the violated check).

use std::path::Path;

#[test]
fn fuzz_corpus_and_artifacts_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, body) in simdnorm::fuzz::TARGETS {
        let mut count = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let data = std::fs::read(&f).unwrap();
                let r = std::panic::catch_unwind(|| body(&data));
                assert!(r.is_ok(), "{name}: {} violates the contract", f.display());
                count += 1;
            }
        }
        println!("{name}: {count} inputs replayed");
        assert!(count > 0, "{name}: no corpus checked in");
        total += count;
    }
    println!("{total} inputs");
}

/// A few hand-made inputs per target (empty, all zeros, all 0xff, a ramp) pass too: the
/// decoder reaches the invalid-call branches and the special values from these alone.
#[test]
fn fuzz_bodies_accept_simple_inputs() {
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 64],
        vec![0xff; 64],
        (0..=255).collect(),
        (0..1024u32).map(|i| (i * 37 % 251) as u8).collect(),
    ];
    for (name, body) in simdnorm::fuzz::TARGETS {
        for (k, data) in inputs.iter().enumerate() {
            let r = std::panic::catch_unwind(|| body(data));
            assert!(r.is_ok(), "{name}: simple input {k} violates the contract");
        }
    }
}

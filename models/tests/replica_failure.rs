//! A replica that dies mid-run (a GPU out of memory) ends a data-parallel run with its error,
//! instead of leaving the other replicas waiting forever for its share of the all-reduce. Its
//! own binary: the failure is injected through a process-wide switch.
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use labbook_models::{NoopObserver, RunConfig, TrainError, TrainOptions, train};

mod common;

/// `replicas` CPU replicas; replica `index` fails at its `step`-th step. Returns what `train`
/// gave, or fails the test after two minutes (the run hung).
fn run_with_failure(replicas: usize, index: usize, step: u64) -> Result<(), TrainError> {
    let devices = vec!["\"cpu\""; replicas].join(", ");
    let text = format!(
        "{}batch_size = {}\ndevices = [{devices}]\n",
        common::TINY_HYBRID_RUN,
        4 * replicas
    );
    let cfg = RunConfig::parse(&text, "replicas.toml").unwrap();
    labbook_models::fail_replica_at(index, step);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let cancel = AtomicBool::new(false);
        let opts = TrainOptions {
            checkpoint_dir: None,
            cancel: &cancel,
            resume_from: None,
        };
        let _ = tx.send(train(&cfg, opts, &mut NoopObserver).map(|_| ()));
    });
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("replica {index} failed at step {step} and the run hung"))
}

#[test]
fn a_replica_out_of_memory_ends_the_run_with_that_error() {
    let _serial = common::serial();
    // Replica 1 (its own thread; replica 0 then waits in the all-reduce), replica 0 (the
    // training thread; replica 1 then waits in the all-reduce), and one of three.
    for (replicas, index, step) in [(2, 1, 3), (2, 0, 2), (3, 2, 2)] {
        let err = run_with_failure(replicas, index, step).expect_err("the run must fail");
        let text = err.to_string();
        assert!(
            matches!(err, TrainError::OutOfMemory { .. }),
            "replica {index}: {text}"
        );
        assert!(
            text.contains(&vec!["cpu"; replicas].join(", "))
                && text.contains(&format!("replica {index}")),
            "replica {index}: {text}"
        );
    }
}

//! Training-step throughput of the CPU backends (and CUDA with `--features cuda`).
//!
//! `cargo run --release -p labbook-models --example bench -- [steps] [backend...]`
//! where backend is `flex`, `ndarray` or `cuda`; prints one JSON line per measurement.
use burn::backend::{Autodiff, Flex, NdArray};
use labbook_models::train::bench_train_with;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut backends: Vec<String> = args.iter().skip(1).cloned().collect();
    if backends.is_empty() {
        backends = vec!["flex".into(), "ndarray".into()];
    }
    let (d_model, layers, seq_len, batch) = (64, 2, 256, 8);
    for backend in &backends {
        for model in ["mamba", "transformer", "hybrid"] {
            let r = match backend.as_str() {
                "flex" => bench_train_with::<Autodiff<Flex>>(
                    model,
                    d_model,
                    layers,
                    seq_len,
                    batch,
                    steps,
                    &Default::default(),
                    "cpu (flex)",
                ),
                "ndarray" => bench_train_with::<Autodiff<NdArray>>(
                    model,
                    d_model,
                    layers,
                    seq_len,
                    batch,
                    steps,
                    &Default::default(),
                    "cpu (ndarray)",
                ),
                "cuda" => labbook_models::bench_train(
                    model,
                    d_model,
                    layers,
                    seq_len,
                    batch,
                    steps,
                    labbook_models::BackendChoice::Cuda(0),
                ),
                other => panic!("unknown backend {other}"),
            };
            match r {
                Ok(r) => println!("{}", serde_json::to_string(&r).unwrap()),
                Err(e) => eprintln!("{backend} {model}: {e}"),
            }
        }
    }
}

//! Training-step throughput on CUDA at a chosen size (used by `scripts/cuda-check.sh`).
//!
//! `cargo run --release -p labbook-models --features cuda --example bench_cuda --
//!  [steps] [d_model] [layers] [seq_len] [batch] [model...]`
//! with models `mamba`, `transformer`, `hybrid` (default: mamba hybrid), each optionally with
//! `@bf16` or `@f16` (`[train] precision`; default f32); prints one JSON line per model
//! (`BenchResult`). Without `--features cuda` it reports that CUDA is not compiled in.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| -> usize {
        args.get(i)
            .map(|s| s.parse().expect("numeric argument"))
            .unwrap_or(default)
    };
    let (steps, d_model, layers, seq_len, batch) =
        (num(0, 10), num(1, 768), num(2, 4), num(3, 2048), num(4, 8));
    let mut models: Vec<&str> = args.iter().skip(5).map(String::as_str).collect();
    if models.is_empty() {
        models = vec!["mamba", "hybrid"];
    }
    let mut failed = false;
    for spec in models {
        let (model, precision) = spec.split_once('@').unwrap_or((spec, "f32"));
        let precision = precision.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
        let shape = labbook_models::BenchShape {
            d_model,
            layers,
            seq_len,
            batch,
            steps,
            precision,
            ..labbook_models::BenchShape::new(model)
        };
        match labbook_models::bench_train(&shape, labbook_models::BackendChoice::Cuda(0)) {
            Ok(r) => println!("{}", serde_json::to_string(&r).unwrap()),
            Err(e) => {
                eprintln!("cuda {spec}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

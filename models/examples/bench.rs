//! Training-step throughput of the CPU backends (and CUDA with `--features cuda`).
//!
//! `cargo run --release -p labbook-models --example bench -- [steps] [backend...]
//! [--models mamba,transformer,hybrid] [--shape d_model,layers,seq_len,batch]`
//! where backend is `flex`, `ndarray` or `cuda` (default `flex ndarray`); the shape defaults to
//! 64,2,256,8 and the models to all three. Prints one JSON line per measurement.
use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::AutodiffBackend;
use labbook_models::bench::{BenchResult, BenchShape, bench_train_with};
use labbook_models::fused::ScanBackend;
use labbook_models::train::TrainError;

fn run<B>(shape: &BenchShape, name: &str) -> Result<BenchResult, TrainError>
where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    bench_train_with::<B>(shape, &Default::default(), name)
}

fn main() {
    let mut steps = 20;
    let mut backends: Vec<String> = Vec::new();
    let mut models = vec!["mamba".to_string(), "transformer".into(), "hybrid".into()];
    let mut shape = [64, 2, 256, 8];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--models" => {
                let v = args.next().expect("--models takes a comma list");
                models = v.split(',').map(str::to_string).collect();
            }
            "--shape" => {
                let v = args
                    .next()
                    .expect("--shape takes d_model,layers,seq_len,batch");
                let v: Vec<usize> = v.split(',').map(|x| x.parse().expect("number")).collect();
                shape = v.try_into().expect("--shape takes four numbers");
            }
            _ => match arg.parse() {
                Ok(n) => steps = n,
                Err(_) => backends.push(arg),
            },
        }
    }
    if backends.is_empty() {
        backends = vec!["flex".into(), "ndarray".into()];
    }
    for backend in &backends {
        for model in &models {
            let [d_model, layers, seq_len, batch] = shape;
            let bench = BenchShape {
                d_model,
                layers,
                seq_len,
                batch,
                steps,
                ..BenchShape::new(model)
            };
            let r = match backend.as_str() {
                "flex" => run::<Autodiff<Flex>>(&bench, "cpu (flex)"),
                "ndarray" => run::<Autodiff<NdArray>>(&bench, "cpu (ndarray)"),
                "cuda" => {
                    labbook_models::bench_train(&bench, labbook_models::BackendChoice::Cuda(0))
                }
                other => panic!("unknown backend {other}"),
            };
            match r {
                Ok(r) => println!("{}", serde_json::to_string(&r).unwrap()),
                Err(e) => eprintln!("{backend} {model}: {e}"),
            }
        }
    }
}

//! Training on your own text through the real binary: a run on a text file, its data in the
//! run record, `sample` continuing what it learned, `export-model` → `train.init_from`
//! giving back the same model, and bad data refused before any run is recorded.
use std::path::Path;

use assert_cmd::Command;

struct Nb {
    dir: tempfile::TempDir,
}

impl Nb {
    fn new() -> Nb {
        let nb = Nb {
            dir: tempfile::tempdir().unwrap(),
        };
        // Words drawn from four (a fixed LCG): inside a word each byte follows from the last.
        let words = ["alpha ", "beta ", "gamma ", "delta "];
        let mut x: u64 = 1;
        let text: String = (0..4000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                words[(x >> 33) as usize % 4]
            })
            .collect();
        std::fs::write(nb.path().join("corpus.txt"), text).unwrap();
        std::fs::write(
            nb.path().join("text.toml"),
            "[model]\nkind = \"mamba\"\nd_model = 32\nn_layers = 2\nd_state = 8\n\n\
             [task]\nkind = \"text\"\npath = \"corpus.txt\"\nseq_len = 32\neval_samples = 16\n\n\
             [train]\nsteps = 150\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 10\nseed = 0\n",
        )
        .unwrap();
        nb
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("labbook").unwrap();
        c.current_dir(self.path())
            .env_remove("LABBOOK_DB")
            .env_remove("LABBOOK_CONFIG")
            .env("LABBOOK_LOG_FILE", self.path().join("labbook.log"));
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).assert().success();
        let o = out.get_output();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).assert().failure();
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    }

    fn metric(&self, run: &str, key: &str) -> f64 {
        let show = self.ok(&["show", run]);
        let line = show
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} in\n{show}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

#[test]
fn a_text_run_learns_samples_and_its_weights_round_trip() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    nb.ok(&["run", "text.toml"]);
    let bpb = nb.metric("R-1", "eval/bpb@32");
    assert!(bpb < 1.0, "eval/bpb@32 = {bpb}");
    let show = nb.ok(&["show", "R-1"]);
    let data = show.lines().find(|l| l.starts_with("data ")).unwrap();
    let size = std::fs::metadata(nb.path().join("corpus.txt"))
        .unwrap()
        .len();
    assert!(
        data.contains("text, bytes tokenizer")
            && data.contains(&format!(
                "corpus.txt ({size} bytes = {size} tokens, modified "
            ))
            && data.contains("held out: the last 5% of it"),
        "{data}"
    );
    // Inside a word the next bytes are determined: greedy decoding completes it.
    for (prompt, rest) in [("gamm", "a "), ("del", "ta "), ("alp", "ha ")] {
        let out = nb.ok(&[
            "sample",
            "R-1",
            "--prompt",
            prompt,
            "--tokens",
            "3",
            "--temperature",
            "0",
        ]);
        assert!(out.starts_with(rest), "{prompt} → {out:?}");
    }
    nb.ok(&["export-model", "R-1", "--out", "r1.safetensors"]);
    // Starting from the exported weights with a learning rate of ~0: the same model.
    nb.ok(&[
        "run",
        "text.toml",
        "--set",
        "train.init_from=r1.safetensors",
        "--set",
        "train.steps=1",
        "--set",
        "train.lr=1e-12",
    ]);
    let again = nb.metric("R-2", "eval/bpb@32");
    assert!(
        (again - bpb).abs() < 1e-3,
        "R-1 {bpb}, from its export {again}"
    );
    // A fresh start for comparison is far from it.
    nb.ok(&[
        "run",
        "text.toml",
        "--set",
        "train.steps=1",
        "--set",
        "train.lr=1e-12",
    ]);
    assert!(nb.metric("R-3", "eval/bpb@32") > bpb + 2.0);
}

#[test]
fn bad_data_and_missing_weights_are_refused_before_a_run_is_recorded() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    let e = nb.fails(&["run", "text.toml", "--set", "task.path=nope.txt"]);
    assert!(e.contains("nope.txt: no such file (task.path)"), "{e}");
    std::fs::write(nb.path().join("odd.bin"), [0u8, 1, 2]).unwrap();
    let e = nb.fails(&[
        "run",
        "text.toml",
        "--set",
        "task.kind=tokens",
        "--set",
        "task.path=odd.bin",
        "--set",
        "task.dtype=u16",
        "--set",
        "task.vocab_size=16",
    ]);
    assert!(
        e.contains("odd.bin: 3 bytes is not a whole number of 2-byte tokens"),
        "{e}"
    );
    let e = nb.fails(&[
        "run",
        "text.toml",
        "--set",
        "train.init_from=gone.safetensors",
    ]);
    assert!(
        e.contains("train.init_from:") && e.contains("gone.safetensors: no such file"),
        "{e}"
    );
    let e = nb.fails(&["run", "text.toml", "--set", "task.seq_len=100000"]);
    assert!(e.contains("longer than the training split"), "{e}");
    let runs = nb.ok(&["runs"]);
    assert!(!runs.contains("R-1"), "a refused run was recorded:\n{runs}");
}

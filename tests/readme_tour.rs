//! The README's CLI tour, run as a user would: every command of the ```sh block under
//! "## A CLI tour", in order, in an empty directory, through `sh` (so comments, `$(…)` and
//! redirections work as in a terminal). Only the commands that need GitHub or a GPU machine
//! are skipped, by name, so a new tour line that does not work fails here.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Tour commands that need a real GitHub (and a runner with a GPU).
const NEEDS_GITHUB: [&str; 4] = [
    "--remote",
    "labbook runner",
    "labbook sync",
    "labbook pull-model",
];

fn tour() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme.find("## A CLI tour").expect("a tour section");
    let block = &readme[start..];
    let open = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let close = block[open..].find("```").expect("the end of the block");
    block[open..open + close]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_tour_runs_in_order_in_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_labbook"), bin.join("labbook")).unwrap();
    let work = dir.path().join("project");
    std::fs::create_dir_all(&work).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let labbook = |args: &[&str]| {
        Command::new(bin.join("labbook"))
            .args(args)
            .current_dir(&work)
            .env_remove("LABBOOK_DB")
            .env_remove("LABBOOK_CONFIG")
            .env("LABBOOK_LOG_FILE", dir.path().join("labbook.log"))
            .output()
            .unwrap()
    };
    // Results are read only once the background runs they name have finished.
    let settle = || {
        let t = Instant::now();
        loop {
            let out = labbook(&["runs", "--json"]);
            let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let busy = runs
                .as_array()
                .unwrap()
                .iter()
                .any(|r| matches!(r["status"].as_str(), Some("queued" | "running")));
            if !busy {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "runs never finished"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let lines = tour();
    assert!(lines.len() > 30, "{lines:?}");
    let mut ran = 0;
    for line in &lines {
        if NEEDS_GITHUB.iter().any(|n| line.contains(n)) {
            continue;
        }
        if ["labbook compare", "labbook plot", "labbook report"]
            .iter()
            .any(|c| line.starts_with(c))
        {
            settle();
        }
        // A person cancels a run they have seen training: wait until it has made a step.
        if let Some(run) = line
            .strip_prefix("labbook cancel ")
            .and_then(|rest| rest.split_whitespace().next())
        {
            let t = Instant::now();
            loop {
                let out = labbook(&["show", run, "--json"]);
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                if v["steps_done"].as_i64().unwrap_or(0) > 0 {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "{run} never trained"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(&work)
            .env("PATH", &path)
            .env("HOME", dir.path())
            .env_remove("LABBOOK_DB")
            .env_remove("LABBOOK_CONFIG")
            .env("LABBOOK_LOG_FILE", dir.path().join("labbook.log"))
            .env("EDITOR", "false")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README tour line failed: {line}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    let skipped = lines
        .iter()
        .filter(|l| NEEDS_GITHUB.iter().any(|n| l.contains(n)))
        .count();
    assert_eq!(
        ran + skipped,
        lines.len(),
        "a line neither ran nor needs GitHub"
    );
    assert!(
        skipped <= 8
            && NEEDS_GITHUB
                .iter()
                .all(|n| lines.iter().any(|l| l.contains(n))),
        "the tour's GitHub lines changed: {skipped} skipped"
    );
    // What the tour promises exists.
    for f in [
        "notebook.md",
        "refs.bib",
        "notebook.json",
        "loss.png",
        "reports/E-1/report.md",
    ] {
        assert!(work.join(f).exists(), "{f} missing");
    }
    settle();
}

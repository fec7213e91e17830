//! A fake GitHub API on your machine, to try `labbook sync` offline.
//!
//! ```sh
//! cargo run --example fake-github            # listens on 127.0.0.1:8787
//! # in configs/labbook.toml:
//! #   [github]
//! #   repo = "lab/notebook"
//! #   api_url = "http://127.0.0.1:8787"
//! GITHUB_TOKEN=fake-token labbook sync --verbose
//! ```
//!
//! Options: `--port N`, `--repo owner/name`, `--token T`, `--fault-rate 0.2`
//! (500/502 and dropped connections), `--user TOKEN=LOGIN` (another accepted token acting
//! as LOGIN, repeatable), `--commits-from GIT_DIR` (every commit of that repo counts as
//! pushed, rescanned every 2 s — for trying `labbook run --remote` and `labbook runner`,
//! see docs/remote-runs.md). State lives in memory until you stop it.
use labbook_testkit::fake::{FakeGithub, Faults};

fn main() {
    let mut port = 8787u16;
    let mut repo = "lab/notebook".to_string();
    let mut token = "fake-token".to_string();
    let mut fault_rate = 0.0f64;
    let mut users: Vec<(String, String)> = Vec::new();
    let mut commits_from: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&a));
        match a.as_str() {
            "--port" => port = val().parse().unwrap_or_else(|_| usage("--port")),
            "--repo" => repo = val(),
            "--token" => token = val(),
            "--fault-rate" => fault_rate = val().parse().unwrap_or_else(|_| usage("--fault-rate")),
            "--user" => {
                let v = val();
                let (t, l) = v.split_once('=').unwrap_or_else(|| usage("--user"));
                users.push((t.to_string(), l.to_string()));
            }
            "--commits-from" => commits_from = Some(val()),
            _ => usage(&a),
        }
    }
    let fake = match FakeGithub::start_on(&format!("127.0.0.1:{port}"), &repo, &token) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    {
        let mut s = fake.state();
        let n = s.create_issue(
            "Try a bidirectional scan",
            "Raised in the reading group; see the Vim paper.",
            &["idea"],
            "alice",
        );
        s.add_comment(n, "I can prototype this next week.", "bob");
        s.create_issue(
            "Flaky CUDA test on the A100 box",
            "Fails 1 in 20 runs.",
            &[],
            "carol",
        );
        s.create_pr("Speed up the selective scan kernel");
        for (t, l) in &users {
            s.add_token(t, l);
        }
    }
    if fault_rate > 0.0 {
        fake.set_faults(Faults {
            error_rate: fault_rate / 2.0,
            drop_rate: fault_rate / 2.0,
            ..Default::default()
        });
    }
    println!("fake GitHub for {repo} at {} (token: {token})", fake.url());
    println!(
        "add to configs/labbook.toml:\n\n[github]\nrepo = \"{repo}\"\napi_url = \"{}\"\n",
        fake.url()
    );
    println!("then: GITHUB_TOKEN={token} labbook sync --verbose   (Ctrl-C stops the fake)");
    loop {
        if let Some(dir) = &commits_from {
            let out = std::process::Command::new("git")
                .args(["-C", dir, "rev-list", "--all"])
                .output();
            if let Ok(out) = out {
                let mut s = fake.state();
                for sha in String::from_utf8_lossy(&out.stdout).lines() {
                    s.push_commit(sha.trim());
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

fn usage(arg: &str) -> ! {
    eprintln!(
        "error: bad argument `{arg}`; usage: fake-github [--port N] [--repo owner/name] [--token T] [--fault-rate 0.2] [--user TOKEN=LOGIN] [--commits-from GIT_DIR]"
    );
    std::process::exit(2)
}

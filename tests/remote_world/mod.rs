//! What the remote-run tests share: a fake GitHub with alice (allowed), mallory (no write
//! access) and the runner's account, alice's pushed checkout of a bare `origin.git`, and
//! helpers to request, run a runner and read comments. `mod remote_world;` in a test file.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use labbook::Store;
use labbook::model::RunId;
use labbook::remote::protocol::{self, Claim, KIND_CLAIM, KIND_RESULTS, Results};
use labbook::store::RunStatus;
use labbook_testkit::fake::FakeGithub;
use labbook_testkit::notebook::{github_table, isolate};

pub const REPO: &str = "lab/notebook";
/// The fake's main token: the runner's (login `labbook-bot`).
pub const RUNNER_TOKEN: &str = "ghp_RUNNERsecret000111222333";
pub const ALICE_TOKEN: &str = "ghp_ALICEsecret000111222333";
pub const MALLORY_TOKEN: &str = "ghp_MALLORYsecret00011122233";
pub const BIN: &str = env!("CARGO_BIN_EXE_labbook");

pub struct World {
    pub fake: FakeGithub,
    pub dir: tempfile::TempDir,
    /// Alice's checkout (pushed to `origin.git`).
    pub src: PathBuf,
    pub sha: String,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Alice",
            "-c",
            "user.email=alice@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn world() -> World {
    let fake = FakeGithub::start(REPO, RUNNER_TOKEN).unwrap();
    fake.state().add_token(ALICE_TOKEN, "alice");
    fake.state().add_token(MALLORY_TOKEN, "mallory");
    // Mallory has no write access: her comments carry `author_association: NONE`.
    fake.state().outsiders.insert("mallory".into());
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "--quiet", "--bare"]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("configs")).unwrap();
    git(&src, &["init", "--quiet"]);
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    std::fs::copy(&smoke, src.join("configs/smoke.toml")).unwrap();
    std::fs::write(src.join("README.md"), "model code\n").unwrap();
    git(&src, &["add", "."]);
    git(&src, &["commit", "--quiet", "-m", "first"]);
    git(
        &src,
        &[
            "push",
            "--quiet",
            origin.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    let sha = git(&src, &["rev-parse", "HEAD"]);
    fake.state().push_commit(&sha);
    let w = World {
        fake,
        dir,
        src,
        sha,
    };
    for who in ["alice", "mallory"] {
        let home = w.home(who);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join("labbook.toml"),
            format!(
                "[user]\nname = \"{who}\"\n\n{}",
                github_table(REPO, &w.fake.url(), "retries = 4\n")
            ),
        )
        .unwrap();
    }
    w
}

impl World {
    pub fn home(&self, who: &str) -> PathBuf {
        self.dir.path().join(who)
    }

    /// `labbook` as `who` (alice, mallory), run in the checkout.
    pub fn cmd(&self, who: &str, token: &str) -> Command {
        let home = self.home(who);
        let mut c = Command::new(BIN);
        isolate(&mut c)
            .current_dir(&self.src)
            .env("LABBOOK_DB", home.join("tracker.db"))
            .env("LABBOOK_CONFIG", home.join("labbook.toml"))
            .env("GITHUB_TOKEN", token)
            .env("LABBOOK_LOG_FILE", self.dir.path().join("labbook.log"));
        c
    }

    pub fn labbook(&self, who: &str, token: &str, args: &[&str]) -> Output {
        self.cmd(who, token).args(args).output().unwrap()
    }

    pub fn request(&self, who: &str, token: &str, args: &[&str]) -> u64 {
        let mut a = vec!["run", "configs/smoke.toml", "--remote"];
        a.extend(args);
        let out = self.labbook(who, token, &a);
        assert!(out.status.success(), "{}", text(&out));
        let n = self
            .fake
            .state()
            .issues
            .iter()
            .map(|i| i.number)
            .max()
            .unwrap();
        assert!(text(&out).contains(&format!("#{n}")), "{}", text(&out));
        n
    }

    /// A runner's workdir and config (`gpu-N`), sharing the fake and the origin repo.
    pub fn runner_cmd(&self, name: &str, extra: &[&str]) -> Command {
        self.runner_cmd_building(name, "[\"true\"]", extra)
    }

    pub fn runner_cmd_building(&self, name: &str, build: &str, extra: &[&str]) -> Command {
        self.runner_cmd_config(name, &format!("build = {build}\nbin = \"{BIN}\"\n"), extra)
    }

    /// A runner whose `[runner]` table has `build_and_bin` for its build settings.
    pub fn runner_cmd_config(&self, name: &str, build_and_bin: &str, extra: &[&str]) -> Command {
        self.runner_cmd_full(name, "", build_and_bin, extra)
    }

    /// A runner with `github_extra` in its `[github]` table and `runner_extra` in its
    /// `[runner]` table.
    pub fn runner_cmd_full(
        &self,
        name: &str,
        github_extra: &str,
        runner_extra: &str,
        extra: &[&str],
    ) -> Command {
        let home = self.dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let cfg = home.join("labbook.toml");
        std::fs::write(
            &cfg,
            format!(
                "{}\n\
                 [runner]\nallow = [\"alice\"]\nclone_url = \"{}\"\n{runner_extra}lease = \"5s\"\nstatus_every = \"500ms\"\nname = \"{name}\"\n",
                github_table(REPO, &self.fake.url(), &format!("retries = 4\n{github_extra}")),
                self.dir.path().join("origin.git").display()
            ),
        )
        .unwrap();
        let mut c = Command::new(BIN);
        isolate(&mut c)
            .current_dir(&home)
            .env("LABBOOK_DB", home.join("runner.db"))
            .env("LABBOOK_CONFIG", &cfg)
            .env("GITHUB_TOKEN", RUNNER_TOKEN)
            .env("LABBOOK_LOG_FILE", self.dir.path().join("labbook.log"))
            .args(["runner", "--repo", REPO, "--workdir"])
            .arg(home.join("work"))
            .args(["--poll", "1s"])
            .args(extra);
        c
    }

    pub fn runner_once(&self, name: &str) -> Output {
        let out = self.runner_cmd(name, &["--once"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        out
    }

    pub fn comments(&self, issue: u64) -> Vec<String> {
        self.fake
            .state()
            .comments_on(issue)
            .iter()
            .map(|c| c.body.clone())
            .collect()
    }

    /// Whether some runner holds a live claim on `issue` right now.
    pub fn claimed(&self, issue: u64) -> bool {
        let comments: Vec<protocol::CommentView> = self
            .fake
            .state()
            .comments_on(issue)
            .iter()
            .map(|c| protocol::CommentView {
                id: c.id,
                body: c.body.clone(),
                author: c.user.clone(),
                updated_at: chrono::DateTime::parse_from_rfc3339(&c.updated_at)
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc)),
            })
            .collect();
        protocol::winning_claim(&comments, chrono::Utc::now()).is_some()
    }

    pub fn claims(&self, issue: u64) -> Vec<Claim> {
        self.comments(issue)
            .iter()
            .filter_map(|c| protocol::parse_block(KIND_CLAIM, c))
            .collect()
    }

    pub fn results(&self, issue: u64) -> Vec<Results> {
        self.comments(issue)
            .iter()
            .filter_map(|c| protocol::parse_block::<Results>(KIND_RESULTS, c))
            .collect()
    }

    /// The text of the results comment on `issue`.
    pub fn results_comment(&self, issue: u64) -> String {
        self.comments(issue)
            .into_iter()
            .find(|c| c.contains("<!-- labbook:results "))
            .expect("a results comment")
    }

    /// Request `issue` is labelled `failed` and closed, and alice's next sync records R-1
    /// as failed with an error that mentions `why`.
    pub fn assert_failed_and_synced(&self, issue: u64, why: &str) {
        {
            let s = self.fake.state();
            assert_eq!(s.issue(issue).state, "closed");
            assert!(s.issue(issue).labels.contains(&"failed".to_string()));
        }
        self.sync_alice();
        let run = self.alice_store().get_run(RunId(1)).unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        let error = run.error.unwrap_or_default();
        assert!(error.contains(why), "{error}");
    }

    /// Waits until a runner's status comment on request `issue` shows training steps.
    pub fn wait_training(&self, issue: u64) {
        wait_for("the runner to train", Duration::from_secs(120), || {
            self.comments(issue)
                .iter()
                .any(|c| c.contains("training, step"))
        });
    }

    /// Request `issue`'s one results block (there must be exactly one).
    pub fn only_result(&self, issue: u64) -> Results {
        let mut results = self.results(issue);
        assert_eq!(results.len(), 1, "results on #{issue}: {results:?}");
        results.remove(0)
    }

    /// `labbook sync` in Alice's notebook; it must succeed.
    pub fn sync_alice(&self) -> Output {
        let out = self.labbook("alice", ALICE_TOKEN, &["sync"]);
        assert!(out.status.success(), "{}", text(&out));
        out
    }

    pub fn alice_store(&self) -> Store {
        Store::open(&self.home("alice").join("tracker.db"), "test").unwrap()
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Stops a runner as systemd does (SIGTERM) and returns its output; it must exit 0.
pub fn terminate(runner: Child) -> Output {
    let term = Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = runner.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// Kills a runner still running when a test fails (it would outlive the test otherwise).
pub struct Reap(pub Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            kill(c);
        }
    }
}

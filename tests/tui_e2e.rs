//! End-to-end test of the TUI: runs the real binary inside tmux, drives it with keys,
//! reads the screen with `capture-pane`, then checks the notebook on disk.
//! Needs tmux (CI installs it); without it this test fails with a clear message.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use labbook::Store;
use labbook::model::{ItemId, Kind, Relation};
use labbook::store::Run;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn start(socket: String, width: u16, height: u16, shell_cmd: &str) -> Tmux {
        let t = Tmux { socket };
        let out = t
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "e2e"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(shell_cmd)
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux new-session failed: {out:?}");
        // Deliver Esc at once (tmux otherwise waits to see if it starts a sequence, and
        // an Esc followed quickly by a key arrives as Alt+key).
        let _ = t
            .cmd()
            .args(["set-option", "-sg", "escape-time", "0"])
            .output();
        t
    }

    fn keys(&self, keys: &[&str]) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "e2e"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
        std::thread::sleep(Duration::from_millis(150));
    }

    fn type_text(&self, text: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "e2e", "-l", text])
            .status()
            .unwrap();
        assert!(ok.success());
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "e2e"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "e2e"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Waits until every needle is on screen; fails with the screen if not.
    fn wait_for(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if needles.iter().all(|n| s.contains(n)) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!("timed out waiting for {needles:?}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn require_tmux() {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tmux is required for the TUI end-to-end test but was not found on PATH; \
         install it (e.g. `apt-get install -y tmux`) and rerun"
    );
}

fn labbook(db: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_labbook"))
        .env("LABBOOK_DB", db)
        .env("LABBOOK_LOG_FILE", db.with_extension("log"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "labbook {args:?}: {out:?}");
}

/// An empty app config beside `db`: the defaults, and no config of the checkout's.
fn empty_config(db: &Path) -> PathBuf {
    let path = db.with_extension("toml");
    std::fs::write(&path, "").unwrap();
    path
}

/// Run `id` of the notebook at `db` once it has finished (within 120 s, else the screen is shown).
fn finished_run(db: &Path, tmux: &Tmux, id: &str) -> Run {
    let start = Instant::now();
    loop {
        let store = Store::open(db, "t").unwrap();
        let runs = store.list_runs(&Default::default()).unwrap();
        if let Some(r) = runs
            .into_iter()
            .find(|r| r.id.to_string() == id && r.status.is_finished())
        {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{id} did not finish:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn tui_command(db: &Path) -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_labbook"));
    format!(
        "env LABBOOK_DB='{}' LABBOOK_LOG_FILE='{}' LABBOOK_CONFIG='{}' '{}'",
        db.display(),
        db.with_extension("log").display(),
        empty_config(db).display(),
        bin.display()
    )
}

#[test]
fn create_link_filter_follow_back_quit() {
    require_tmux();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracker.db");
    labbook(&db, &["init", "--example"]);
    let socket = format!("labbook-e2e-{}", std::process::id());
    let tmux = Tmux::start(socket, 120, 40, &tui_command(&db));

    tmux.wait_for(&["Tasks 4", "Papers 4", "T-1"]);

    // Create a task with the form.
    tmux.keys(&["a"]);
    tmux.wait_for(&["New task", "title"]);
    tmux.type_text("Profile the selective scan kernel");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&[
        "added T-5",
        "Tasks 5",
        "T-5  Profile the selective scan kernel",
    ]);

    // Link it to a paper through the fuzzy picker.
    tmux.keys(&["L"]);
    tmux.wait_for(&["Link T-5 to"]);
    tmux.type_text("attention is all");
    tmux.wait_for(&["P-3   Attention Is All You Need"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["linked: T-5 relates-to P-3", "Links (1)"]);

    // Filter the task list as we type.
    tmux.keys(&["/"]);
    tmux.type_text("profile scan");
    let s = tmux.wait_for(&["/profile scan"]);
    assert!(!s.contains("T-2 "), "filter should hide other tasks:\n{s}");
    tmux.keys(&["Enter"]);

    // Follow the link to the paper, then come back.
    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["┌ Papers", "P-3  Attention Is All You Need"]);
    tmux.keys(&["BSpace"]);
    tmux.wait_for(&["┌ Tasks", "T-5  Profile the selective scan kernel"]);

    // Help comes from the keymap and closes on any key.
    tmux.keys(&["?"]);
    tmux.wait_for(&["Help", "follow link"]);
    tmux.keys(&["Escape"]);

    // Quit: no edit is pending, so it just quits.
    tmux.keys(&["q"]);
    let start = Instant::now();
    while tmux.alive() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "q did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The notebook has the task and the link.
    let store = Store::open(&db, "check").unwrap();
    let t5 = ItemId {
        kind: Kind::Task,
        num: 5,
    };
    assert_eq!(
        store.get(t5).unwrap().title,
        "Profile the selective scan kernel"
    );
    let links = store.links_of(t5).unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].other.to_string(), "P-3");
    assert_eq!(links[0].relation, Relation::RelatesTo);
}

#[test]
fn writes_by_another_process_show_up_live() {
    require_tmux();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracker.db");
    labbook(&db, &["add", "task", "First task"]);
    let socket = format!("labbook-e2e-live-{}", std::process::id());
    let tmux = Tmux::start(socket, 100, 30, &tui_command(&db));
    tmux.wait_for(&["Tasks 1", "First task"]);
    // The CLI writes while the TUI runs; the TUI notices without a restart.
    labbook(&db, &["add", "task", "Added from the CLI"]);
    tmux.wait_for(&["Tasks 2", "Added from the CLI"]);
    tmux.keys(&["q"]);
}

#[test]
fn empty_notebook_shows_what_to_do() {
    require_tmux();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracker.db");
    let socket = format!("labbook-e2e-empty-{}", std::process::id());
    let tmux = Tmux::start(socket, 80, 24, &tui_command(&db));
    tmux.wait_for(&["This notebook is empty", "labbook init --example"]);
    tmux.keys(&["q"]);
}

/// `labbook run` in a real terminal: the header line comes first, on a line of its own (it
/// used to be printed after the progress bar's first frame, behind it), and the bar is
/// cleared before the metrics table.
#[test]
fn run_in_a_terminal_prints_header_then_table_without_a_stale_bar() {
    require_tmux();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracker.db");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    let cmd = format!(
        "env LABBOOK_DB='{}' LABBOOK_LOG_FILE='{}' '{}' run '{}'; sleep 30",
        db.display(),
        db.with_extension("log").display(),
        env!("CARGO_BIN_EXE_labbook"),
        cfg.display()
    );
    let socket = format!("labbook-e2e-runbar-{}", std::process::id());
    let tmux = Tmux::start(socket, 120, 40, &cmd);
    let screen = tmux.wait_for(&["R-1 succeeded", "tokens_per_s"]);
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines[0].starts_with("R-1: training MA (d_model 16) on induction-heads"),
        "{screen}"
    );
    assert!(
        !screen.contains("/5 ") && !screen.contains("[="),
        "a stale progress bar line: {screen}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("R-1 succeeded")),
        "{screen}"
    );
}

#[test]
fn live_runs_tab_with_concurrent_workers_launch_and_stop() {
    require_tmux();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracker.db");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    let cfg = cfg.to_str().unwrap();
    for _ in 0..3 {
        labbook(
            &db,
            &[
                "run",
                cfg,
                "--set",
                "train.steps=300",
                "--set",
                "train.eval_every=50",
                "--detach",
            ],
        );
    }
    let socket = format!("labbook-e2e-runs-{}", std::process::id());
    let tmux = Tmux::start(socket, 160, 48, &tui_command(&db));
    tmux.wait_for(&["Runs 3"]);
    tmux.keys(&["5"]);
    tmux.wait_for(&["running", "%"]);
    // Stop R-1 (selected) from the TUI: graceful, it ends cancelled.
    tmux.keys(&["d"]);
    // Start a fourth run from the TUI's launch prompt.
    tmux.keys(&["a"]);
    tmux.keys(&["C-u"]);
    tmux.type_text(&format!("{cfg} --set train.steps=20"));
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Runs 4"]);
    let start = Instant::now();
    loop {
        let s = tmux.screen();
        assert!(!s.to_lowercase().contains("locked"), "{s}");
        let store = Store::open(&db, "t").unwrap();
        let runs = store.list_runs(&Default::default()).unwrap();
        if runs.len() == 4 && runs.iter().all(|r| r.status.is_finished()) {
            let st: Vec<_> = runs.iter().map(|r| r.status.as_str()).collect();
            assert_eq!(
                st,
                ["cancelled", "succeeded", "succeeded", "succeeded"],
                "{s}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "runs did not finish; screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux.wait_for(&["cancelled", "succeeded"]);
    tmux.keys(&["q"]);
    let store = Store::open(&db, "t").unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

/// `R` on an experiment: the picker lists `configs/**/*.toml` beside the notebook with a
/// preview, `--set` overrides go in the second field, and enter starts the run in the
/// background recorded under that experiment; the config it used is listed first next time.
#[test]
fn r_on_an_experiment_starts_a_run_from_a_picked_config() {
    require_tmux();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tracker.db");
    let configs = dir.path().join("configs/ideas");
    std::fs::create_dir_all(&configs).unwrap();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    std::fs::copy(&smoke, dir.path().join("configs/smoke.toml")).unwrap();
    std::fs::copy(&smoke, configs.join("alpha.toml")).unwrap();
    labbook(&db, &["add", "experiment", "Picker sweep"]);
    let socket = format!("labbook-e2e-picker-{}", std::process::id());
    let tmux = Tmux::start(socket, 140, 40, &tui_command(&db));
    tmux.wait_for(&["Experiments 1"]);
    tmux.keys(&["4"]);
    tmux.wait_for(&["Picker sweep"]);
    tmux.keys(&["R"]);
    // Both configs, sorted by path, and the first one's text beside them.
    let s = tmux.wait_for(&[
        "Start a run under E-1",
        "configs/ideas/alpha.toml",
        "configs/smoke.toml",
    ]);
    assert!(s.contains("[model]"), "no preview:\n{s}");
    tmux.type_text("smoke");
    tmux.keys(&["Tab"]);
    tmux.type_text("train.steps=20");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["started in the background"]);
    let run = finished_run(&db, &tmux, "R-1");
    assert_eq!(run.status.as_str(), "succeeded");
    assert_eq!(
        run.experiment.map(|e| e.to_string()).as_deref(),
        Some("E-1")
    );
    assert_eq!(run.steps_total, Some(20), "the override was not applied");
    assert!(
        run.config_path
            .as_deref()
            .is_some_and(|p| p.ends_with("configs/smoke.toml")),
        "{:?}",
        run.config_path
    );
    // Next time the config that was used comes first, marked recent.
    tmux.keys(&["R"]);
    let s = tmux.wait_for(&["Start a run under E-1"]);
    let smoke_at = s.find("• configs/smoke.toml").expect("smoke marked recent");
    let alpha_at = s.find("configs/ideas/alpha.toml").expect("alpha listed");
    assert!(smoke_at < alpha_at, "recent config not first:\n{s}");
    tmux.keys(&["Escape"]);
    // `r` on the run starts it again with its config snapshot, under the same experiment.
    tmux.keys(&["5"]);
    tmux.wait_for(&["R-1", "succeeded"]);
    tmux.keys(&["r"]);
    tmux.wait_for(&["R-2 started in the background"]);
    let again = finished_run(&db, &tmux, "R-2");
    assert_eq!(again.status.as_str(), "succeeded");
    assert_eq!(
        again.experiment.map(|e| e.to_string()).as_deref(),
        Some("E-1")
    );
    assert_eq!(again.steps_total, Some(20), "not the snapshot's steps");
    assert_eq!(again.name.as_deref(), Some("smoke"));
    tmux.keys(&["q"]);
}

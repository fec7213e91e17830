//! `labbook sync`, `conflicts` and `resolve` through the real binary, against the fake.
use std::path::Path;

use assert_cmd::Command;
use labbook_testkit::fake::FakeGithub;
use labbook_testkit::notebook::{github_table, isolate};
use serde_json::Value;

const TOKEN: &str = "ghp_CLIsecretTOKEN9876543210";

struct Nb {
    dir: tempfile::TempDir,
}

impl Nb {
    fn new(api_url: &str, extra: &str) -> Nb {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("configs")).unwrap();
        std::fs::write(
            dir.path().join("configs/labbook.toml"),
            format!(
                "[user]\nname = \"ada\"\n\n{}",
                github_table("lab/nb", api_url, extra)
            ),
        )
        .unwrap();
        Nb { dir }
    }

    fn cmd(&self, token: Option<&str>) -> Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("labbook"));
        isolate(&mut c)
            .current_dir(self.dir.path())
            .env("PATH", self.dir.path()) // no `gh` to fall back on
            .env("LABBOOK_LOG", "trace")
            .env("LABBOOK_LOG_FILE", self.dir.path().join("labbook.log"));
        if let Some(t) = token {
            c.env("GITHUB_TOKEN", t);
        }
        Command::from_std(c)
    }

    fn run(&self, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
        let out = self.cmd(token).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("labbook.log")).unwrap_or_default()
    }

    fn dump(&self) -> String {
        let (ok, out, _) = self.run(None, &["export", "json"]);
        assert!(ok);
        out.lines()
            .filter(|l| !l.contains("exported_at"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn db_has(dir: &Path) -> bool {
    dir.join("tracker.db").exists()
}

#[test]
fn token_is_never_printed_or_logged() {
    let fake = FakeGithub::start("lab/nb", TOKEN).unwrap();
    let nb = Nb::new(&fake.url(), "");
    let (ok, _, _) = nb.run(None, &["add", "task", "Hello"]);
    assert!(ok);
    let before = nb.dump();
    let wrong = "ghp_WRONGtokenABCDEF";
    let (ok, out, err) = nb.run(Some(wrong), &["sync", "--verbose"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("401") && err.contains("token"), "{err}");
    assert_eq!(nb.dump(), before, "local data untouched");
    let (ok, out2, err2) = nb.run(Some(TOKEN), &["sync", "--verbose"]);
    assert!(ok, "{err2}");
    assert!(out2.contains("created #1 for T-1"), "{out2}");
    for text in [&out, &err, &out2, &err2, &nb.log()] {
        assert!(
            !text.contains(wrong) && !text.contains(TOKEN),
            "token leaked: {text}"
        );
        assert!(!text.contains("WRONGtoken") && !text.contains("CLIsecret"));
    }
    assert!(
        !std::fs::read(nb.dir.path().join("tracker.db"))
            .unwrap()
            .windows(TOKEN.len())
            .any(|w| w == TOKEN.as_bytes())
    );
    let (ok, json, _) = nb.run(Some(TOKEN), &["sync", "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["created"], 0);
}

#[test]
fn missing_token_and_unreachable_api_are_one_line_errors() {
    let nb = Nb::new("http://127.0.0.1:9", "retries = 1\n");
    nb.run(None, &["add", "task", "Hello"]);
    let before = nb.dump();
    let (ok, _, err) = nb.run(None, &["sync"]);
    assert!(!ok);
    assert!(err.contains("no GitHub token"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let (ok, _, err) = nb.run(Some(TOKEN), &["sync"]);
    assert!(!ok);
    assert!(err.contains("cannot reach http://127.0.0.1:9"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains(TOKEN));
    assert_eq!(nb.dump(), before);
    assert!(db_has(nb.dir.path()));
}

#[test]
fn conflicts_are_listed_and_resolved_from_the_cli() {
    let fake = FakeGithub::start("lab/nb", TOKEN).unwrap();
    let nb = Nb::new(&fake.url(), "");
    nb.run(None, &["add", "task", "Original"]);
    assert!(nb.run(Some(TOKEN), &["sync"]).0);
    assert!(nb.run(None, &["edit", "T-1", "--title", "Mine"]).0);
    fake.state().issue_mut(1).title = "Theirs".into();
    let (ok, out, err) = nb.run(Some(TOKEN), &["sync"]);
    assert!(ok, "{err}");
    assert!(out.contains("1 conflict"), "{out}");
    let (_, out, _) = nb.run(None, &["show", "T-1"]);
    assert!(out.contains("github: lab/nb#1 (conflict"), "{out}");
    let (_, out, _) = nb.run(None, &["conflicts"]);
    assert!(out.contains("T-1 Mine (#1): title"), "{out}");
    assert!(out.contains("theirs: Theirs"), "{out}");
    let (_, json, _) = nb.run(None, &["conflicts", "--json"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["field"], "title");
    assert_eq!(v[0]["mine"], "Mine");
    let (ok, _, err) = nb.run(None, &["resolve", "T-1", "colour", "--mine"]);
    assert!(!ok && err.contains("not a synced field"), "{err}");
    let (ok, _, err) = nb.run(None, &["resolve", "T-1", "title", "--theirs"]);
    assert!(ok, "{err}");
    let (_, out, _) = nb.run(None, &["conflicts"]);
    assert_eq!(out.trim(), "no conflicts");
    let (_, out, _) = nb.run(None, &["show", "T-1", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["item"]["title"], "Theirs");

    // --edit: the editor gets mine (and theirs as comments); what it saves goes both ways.
    assert!(nb.run(None, &["edit", "T-1", "--body", "mine"]).0);
    fake.state().issue_mut(1).body = Some("theirs".into());
    assert!(nb.run(Some(TOKEN), &["sync"]).0);
    let out = nb
        .cmd(None)
        .env("EDITOR", "sed -i 1s/.*/merged/")
        .env("PATH", "/usr/bin:/bin")
        .args(["resolve", "T-1", "body", "--edit"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(nb.run(Some(TOKEN), &["sync"]).0);
    let (_, out, _) = nb.run(None, &["show", "T-1", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["item"]["body"], "merged");
    assert!(
        fake.state()
            .issue(1)
            .body
            .as_deref()
            .unwrap()
            .starts_with("merged\n")
    );
}

#[test]
fn sync_without_a_github_section_says_what_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("labbook")
        .unwrap()
        .current_dir(dir.path())
        .env_remove("LABBOOK_DB")
        .env_remove("LABBOOK_CONFIG")
        .env("LABBOOK_LOG_FILE", dir.path().join("l.log"))
        .arg("sync")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no [github] section"), "{err}");
}

#[test]
fn sync_killed_with_sigkill_resumes_without_duplicates() {
    let fake = FakeGithub::start("lab/nb", TOKEN).unwrap();
    {
        let mut s = fake.state();
        for k in 0..150 {
            s.create_issue(&format!("Remote {k}"), "", &[], "alice");
        }
    }
    let nb = Nb::new(&fake.url(), "");
    for k in 0..15 {
        assert!(nb.run(None, &["add", "idea", &format!("Local {k}")]).0);
    }
    fake.set_faults(labbook_testkit::fake::Faults {
        delay: Some(std::time::Duration::from_millis(60)),
        ..Default::default()
    });
    // Kill -9 at several points of successive runs.
    let mut partial = Vec::new();
    for wait_ms in [300u64, 300, 500, 500] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("labbook"))
            .current_dir(nb.dir.path())
            .env_remove("LABBOOK_DB")
            .env_remove("LABBOOK_CONFIG")
            .env("PATH", nb.dir.path())
            .env("LABBOOK_LOG_FILE", nb.dir.path().join("labbook.log"))
            .env("GITHUB_TOKEN", TOKEN)
            .arg("sync")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let _ = child.kill();
        let _ = child.wait();
        let (_, status, _) = nb.run(None, &[]);
        let linked: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("GitHub: "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        partial.push(linked);
    }
    assert!(
        partial.iter().any(|n| (1..165).contains(n)),
        "at least one run was killed half-way: {partial:?}"
    );
    fake.set_faults(Default::default());
    eprintln!("linked after each kill: {partial:?}");
    let (ok, _, err) = nb.run(Some(TOKEN), &["sync"]);
    assert!(ok, "{err}");
    let (ok, out, _) = nb.run(Some(TOKEN), &["sync"]);
    assert!(ok);
    assert!(out.contains("already in step"), "{out}");
    let s = fake.state();
    let items = s
        .issues
        .iter()
        .filter(|i| !i.labels.iter().any(|l| l == "labbook-notebook"))
        .count();
    assert_eq!(items, 165, "one issue per local item, none twice");
    // And one notebook page, however many times sync was killed while making it.
    assert_eq!(s.issues_with("<!-- labbook:notebook -->").len(), 1);
    for k in 1..=15 {
        assert_eq!(s.issues_with(&format!("<!-- labbook:I-{k} -->")).len(), 1);
    }
    drop(s);
    let (_, out, _) = nb.run(None, &["list", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        165,
        "each remote issue imported once"
    );
}

/// End to end: an issue whose title and body carry terminal escapes (an OSC 52 clipboard
/// write, a screen clear) reaches `labbook list` / `show` / `search` without a single
/// control character; text typed in locally with escapes is shown defused too; a stranger's
/// marker is reported by `sync` and left alone.
#[test]
fn github_text_never_reaches_the_terminal_with_control_characters() {
    let fake = FakeGithub::start("lab/nb", TOKEN).unwrap();
    let nb = Nb::new(&fake.url(), "kinds = [\"task\"]\n");
    let (ok, _, err) = nb.run(None, &["add", "paper", "Private draft"]);
    assert!(ok, "{err}");
    let (ok, _, err) = nb.run(
        None,
        &[
            "add",
            "task",
            "Local \u{1b}]52;c;bG9jYWw=\u{7}typed \u{1b}[2J",
        ],
    );
    assert!(ok, "{err}");
    {
        let mut s = fake.state();
        s.create_issue(
            "Evil \u{1b}]52;c;ZXZpbA==\u{7}title \u{1b}[2J",
            "body \u{1b}[31mred\u{9b}0m",
            &["task"],
            "mallory",
        );
        s.create_issue("Link me", "x\n\n<!-- labbook:P-1 -->", &[], "mallory");
    }
    let (ok, out, err) = nb.run(Some(TOKEN), &["sync"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("ignored #2: marker P-1 from @mallory"),
        "{out}"
    );
    let control = |s: &str| {
        s.chars().any(|c| {
            c != '\n' && c != '\t' && (c.is_control() || ('\u{80}'..='\u{9f}').contains(&c))
        })
    };
    for args in [
        &["list"][..],
        &["show", "T-1"],
        &["show", "T-2"],
        &["search", "title"],
        &["export", "markdown"],
    ] {
        let (ok, out, err) = nb.run(None, args);
        assert!(ok, "{args:?}: {err}");
        assert!(
            !control(&out),
            "{args:?} printed a control character: {out:?}"
        );
    }
    let (_, list, _) = nb.run(None, &["list"]);
    assert!(list.contains("Evil ]52;c;ZXZpbA==title [2J"), "{list}");
    assert!(
        list.contains("Local \u{fffd}]52;c;bG9jYWw=\u{fffd}typed"),
        "{list}"
    );
    // JSON escapes them instead (it is for programs, and keeps the data as stored).
    let (ok, json, _) = nb.run(None, &["list", "--json"]);
    assert!(ok && !control(&json));
    assert!(json.contains("\\u001b]52;c;bG9jYWw="), "{json}");
}

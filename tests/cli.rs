//! End-to-end tests of the real `labbook` binary on real notebook files.
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

struct Nb {
    dir: tempfile::TempDir,
}

impl Nb {
    fn new() -> Nb {
        Nb {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("tracker.db")
    }

    /// `labbook` in the notebook's directory, isolated from the developer's environment.
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("labbook").unwrap();
        c.current_dir(self.dir.path())
            .env_remove("LABBOOK_DB")
            .env_remove("LABBOOK_CONFIG")
            .env("LABBOOK_LOG_FILE", self.dir.path().join("labbook.log"))
            .env("EDITOR", "false");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Runs a command that must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).assert().failure();
        String::from_utf8(out.get_output().stderr.clone()).unwrap()
    }

    fn dump(&self) -> String {
        self.ok(&["export", "json"])
            .lines()
            .filter(|l| !l.contains("exported_at"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn add_list_show_roundtrip_with_unicode_and_sql() {
    let nb = Nb::new();
    let title = "Ünïcödé \"quoted\" 'single' ; DROP TABLE items; -- 選択 🐍";
    let out = nb.ok(&[
        "add",
        "task",
        title,
        "--tag",
        "cuda",
        "--assignee",
        "bob",
        "--priority",
        "1",
    ]);
    assert_eq!(out.trim(), format!("T-1  {title}"));
    assert!(
        nb.db().exists(),
        "tracker.db created in the current directory"
    );
    let item = nb.json(&["show", "T-1"]);
    assert_eq!(item["item"]["title"], title);
    assert_eq!(item["item"]["assignee"], "bob");
    assert_eq!(item["item"]["priority"], 1);
    assert_eq!(item["item"]["tags"][0], "cuda");
    let list = nb.json(&["list", "task"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let text = nb.ok(&["list"]);
    assert!(text.contains("T-1") && text.contains("#cuda"), "{text}");
}

#[test]
fn db_is_found_in_parent_directories_and_overridable() {
    let nb = Nb::new();
    nb.ok(&["add", "idea", "top level"]);
    let sub = nb.dir.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    let out = nb
        .cmd()
        .current_dir(&sub)
        .args(["list", "--json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["title"], "top level");
    assert!(!sub.join("tracker.db").exists());

    let other = nb.dir.path().join("other.db");
    nb.cmd()
        .env("LABBOOK_DB", &other)
        .args(["add", "task", "elsewhere"])
        .assert()
        .success();
    let via_flag = nb.json(&["list", "--db", other.to_str().unwrap()]);
    assert_eq!(via_flag[0]["title"], "elsewhere");
    assert_eq!(nb.json(&["list"]).as_array().unwrap().len(), 1);
}

#[test]
fn links_comments_history_tags_search() {
    let nb = Nb::new();
    nb.ok(&[
        "add",
        "paper",
        "Mamba: Selective State Spaces",
        "--authors",
        "Albert Gu, Tri Dao",
        "--year",
        "2023",
    ]);
    nb.ok(&[
        "add",
        "idea",
        "Hybrid layers",
        "--body",
        "Interleave attention with Mamba",
    ]);
    nb.ok(&[
        "add",
        "experiment",
        "Induction heads",
        "--hypothesis",
        "hybrids extrapolate",
        "--link",
        "I-1",
    ]);
    let out = nb.ok(&["link", "I-1", "P-1"]);
    assert_eq!(out.trim(), "I-1 motivated-by P-1");
    let paper = nb.json(&["show", "P-1"]);
    assert_eq!(paper["links"][0]["label"], "motivates");
    assert_eq!(paper["links"][0]["other"], "I-1");
    let idea = nb.json(&["show", "I-1"]);
    let labels: Vec<_> = idea["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels, ["motivated-by", "tested-by"]);
    let linked = nb.json(&["list", "--linked-to", "I-1"]);
    assert_eq!(linked.as_array().unwrap().len(), 2);

    nb.ok(&["comment", "E-1", "try a chunked kernel"]);
    nb.ok(&["tag", "E-1", "Scan", "cuda"]);
    nb.ok(&["tag", "E-1", "--remove", "cuda"]);
    nb.ok(&[
        "edit",
        "E-1",
        "--status",
        "running",
        "--set",
        "conclusion=pending",
    ]);
    let e = nb.json(&["show", "E-1"]);
    assert_eq!(e["item"]["tags"], serde_json::json!(["scan"]));
    assert_eq!(e["item"]["status"], "running");
    assert_eq!(e["comments"][0]["body"], "try a chunked kernel");
    let fields: Vec<_> = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"status") && fields.contains(&"conclusion") && fields.contains(&"tags"),
        "{fields:?}"
    );
    let st = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["field"] == "status")
        .unwrap();
    assert_eq!(
        (st["old"].as_str(), st["new"].as_str()),
        (Some("planned"), Some("running"))
    );

    let hits = nb.json(&["search", "chunked"]);
    assert_eq!(hits[0]["id"], "E-1");
    let hits = nb.json(&["search", "dao"]);
    assert_eq!(hits[0]["id"], "P-1");
    let hits = nb.json(&["search", "interleave", "attention"]);
    assert_eq!(hits[0]["id"], "I-1");
    // Whole words, except the last word, which also matches as a prefix; a word ending in
    // `*` is a prefix anywhere; an empty result says how words match.
    assert_eq!(nb.json(&["search", "chunk"])[0]["id"], "E-1");
    assert!(
        nb.json(&["search", "chunk", "attention"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(nb.json(&["search", "chunk*"])[0]["id"], "E-1");
    assert!(
        nb.ok(&["search", "nowhere"])
            .contains("the last one also as a prefix")
    );

    nb.ok(&["unlink", "I-1", "P-1"]);
    assert_eq!(
        nb.json(&["show", "P-1"])["links"].as_array().unwrap().len(),
        0
    );
}

#[test]
fn archive_restore_purge() {
    let nb = Nb::new();
    nb.ok(&["add", "task", "a"]);
    nb.ok(&["add", "task", "b"]);
    nb.ok(&["rm", "T-1"]);
    assert_eq!(nb.json(&["list"]).as_array().unwrap().len(), 1);
    assert_eq!(nb.json(&["list", "--all"]).as_array().unwrap().len(), 2);
    nb.ok(&["rm", "T-1", "--restore"]);
    assert_eq!(nb.json(&["list"]).as_array().unwrap().len(), 2);
    nb.ok(&["rm", "T-1", "--purge"]);
    assert!(nb.fails(&["show", "T-1"]).contains("no item T-1"));
}

#[test]
fn bibtex_import_export_and_dedupe() {
    let nb = Nb::new();
    let bib = nb.dir.path().join("refs.bib");
    std::fs::write(
        &bib,
        "@article{gu2023mamba,\n title = {Mamba: Linear-Time Sequence Modeling with Selective State Spaces},\n author = {Gu, Albert and Dao, Tri},\n journal = {arXiv preprint arXiv:2312.00752},\n year = {2023}\n}\n\n@inproceedings{vaswani2017,\n title = {Attention Is All You Need},\n author = {Vaswani, Ashish},\n year = {2017},\n doi = {10.5555/3295222.3295349}\n}\n",
    )
    .unwrap();
    let out = nb.ok(&["import", "bibtex", "refs.bib"]);
    assert!(out.contains("2 added, 0 skipped"), "{out}");
    let again = nb.json(&["import", "bibtex", "refs.bib"]);
    assert_eq!(again["added"].as_array().unwrap().len(), 0);
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2);
    let exported = nb.ok(&["export", "bibtex"]);
    assert!(
        exported.contains("gu2023mamba") && exported.contains("vaswani2017"),
        "{exported}"
    );
    // The export re-imports into a fresh notebook with the same titles.
    let nb2 = Nb::new();
    std::fs::write(nb2.dir.path().join("out.bib"), &exported).unwrap();
    nb2.ok(&["import", "bibtex", "out.bib"]);
    let titles: Vec<_> = nb2
        .json(&["list", "paper"])
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(titles.len(), 2);
    assert!(titles[0].starts_with("Mamba"));
}

#[test]
fn malformed_bibtex_names_file_and_line_and_adds_nothing() {
    let nb = Nb::new();
    std::fs::write(
        nb.dir.path().join("bad.bib"),
        "@article{ok,\n title = {Fine},\n year = {2020}\n}\n\n@article{broken,\n title = {Unclosed\n",
    )
    .unwrap();
    let err = nb.fails(&["import", "bibtex", "bad.bib"]);
    assert!(err.starts_with("error: bad.bib:"), "{err}");
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert_eq!(
        nb.json(&["list"]).as_array().unwrap().len(),
        0,
        "nothing half-imported"
    );
    let err = nb.fails(&["import", "bibtex", "missing.bib"]);
    assert!(err.contains("missing.bib"), "{err}");
}

#[test]
fn bad_input_is_one_line_nonzero_and_changes_nothing() {
    let nb = Nb::new();
    nb.ok(&["init", "--example"]);
    let before = nb.dump();
    let cases: &[(&[&str], &str)] = &[
        (&["show", "T-999"], "no item T-999"),
        (&["show", "X-1"], "not an item ID"),
        (
            &["edit", "T-1", "--status", "adopted"],
            "`adopted` is not a task status",
        ),
        (
            &["edit", "T-1", "--set", "year=2020"],
            "a task has no field `year`",
        ),
        (
            &["edit", "P-1", "--set", "year=soon"],
            "invalid value `soon` for `year`",
        ),
        (
            &["edit", "T-1", "--set", "due=2026-13-01"],
            "a date YYYY-MM-DD",
        ),
        (
            &["add", "task", "x", "--status", "adopted"],
            "not a task status",
        ),
        (&["add", "task", "x", "--link", "P-999"], "no item P-999"),
        (&["add", "task", "   "], "title cannot be empty"),
        (&["link", "T-1", "T-1"], "cannot link T-1 to itself"),
        (&["link", "T-1", "P-999"], "no item P-999"),
        (
            &["link", "T-1", "P-1", "--as", "likes"],
            "unknown link relation `likes`",
        ),
        (&["unlink", "T-1", "P-2"], "not linked"),
        (&["comment", "I-99", "hi"], "no item I-99"),
        (&["tag", "T-1", "a,b"], "invalid tag"),
        (&["rm", "E-42"], "no item E-42"),
        (&["list", "--status", "nope"], "not a status"),
        (&["list", "--linked-to", "T-77"], "no item T-77"),
        (&["init", "--example"], "already has"),
    ];
    for (args, expect) in cases {
        let err = nb.fails(args);
        assert!(
            err.contains(expect),
            "{args:?}: expected `{expect}` in {err}"
        );
        assert!(
            err.starts_with("error: ") || err.starts_with("error:"),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
    }
    // clap rejects an unknown kind before touching the database.
    let err = nb.fails(&["add", "note", "x"]);
    assert!(err.contains("unknown kind `note`"), "{err}");
    assert_eq!(nb.dump(), before, "no failed command changed the notebook");
}

#[test]
fn foreign_unreadable_newer_and_read_only_databases() {
    let nb = Nb::new();
    let text = nb.dir.path().join("notes.db");
    std::fs::write(&text, "not a database").unwrap();
    let err = nb.fails(&["--db", text.to_str().unwrap(), "list"]);
    assert!(
        err.contains("notes.db") && err.contains("not an SQLite file"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "not a database");

    let foreign = nb.dir.path().join("foreign.db");
    rusqlite_like_foreign(&foreign);
    let err = nb.fails(&["--db", foreign.to_str().unwrap(), "add", "task", "x"]);
    assert!(err.contains("not a labbook database"), "{err}");

    let missing_dir = nb.dir.path().join("nope/tracker.db");
    let err = nb.fails(&["--db", missing_dir.to_str().unwrap(), "list"]);
    assert!(err.contains("does not exist"), "{err}");

    nb.ok(&["add", "task", "keep me"]);
    let mut perms = std::fs::metadata(nb.db()).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(nb.db(), perms).unwrap();
    let err = nb.fails(&["add", "task", "x"]);
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let list = nb.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "reads still work");
}

/// An SQLite file made by another program (a table and no labbook marker).
fn rusqlite_like_foreign(path: &Path) {
    // Build it with the labbook binary's own SQLite via backup of an empty store would mark it
    // as labbook's; instead write a minimal valid SQLite file with the sqlite3 CLI if present,
    // else with Python's sqlite3, both standard on the CI image.
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit()",
            path.to_str().unwrap(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with sqlite3 is needed to build a foreign database"
    );
}

#[test]
fn newer_schema_is_refused() {
    let nb = Nb::new();
    nb.ok(&["add", "task", "x"]);
    let ok = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('pragma user_version=99'); c.commit()", nb.db().to_str().unwrap()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let err = nb.fails(&["list"]);
    assert!(err.contains("newer than this labbook supports"), "{err}");
}

#[test]
fn editor_edit_applies_and_bad_edit_keeps_text() {
    let nb = Nb::new();
    nb.ok(&["add", "task", "Write the scan", "--body", "old body"]);
    // A scripted "editor" that rewrites the status and the body.
    let script = nb.dir.path().join("ed.sh");
    std::fs::write(&script, "#!/bin/sh\nsed -i 's/^status = \"todo\"/status = \"doing\"/; s/^old body$/new body/' \"$1\"\n").unwrap();
    let ed = format!("sh {}", script.display());
    nb.cmd()
        .env("EDITOR", &ed)
        .env_remove("VISUAL")
        .args(["edit", "T-1"])
        .assert()
        .success();
    let t = nb.json(&["show", "T-1"]);
    assert_eq!(t["item"]["status"], "doing");
    assert_eq!(t["item"]["body"], "new body");

    let bad = nb.dir.path().join("bad.sh");
    std::fs::write(&bad, "#!/bin/sh\nsed -i 's/^status = \"doing\"/status = \"maybe\"/; s/^new body$/precious words/' \"$1\"\n").unwrap();
    let out = nb
        .cmd()
        .env("EDITOR", format!("sh {}", bad.display()))
        .env_remove("VISUAL")
        .args(["edit", "T-1"])
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("`maybe` is not a task status"), "{err}");
    let kept = err
        .split("kept in ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(')');
    assert!(
        std::fs::read_to_string(kept)
            .unwrap()
            .contains("precious words")
    );
    assert_eq!(nb.json(&["show", "T-1"])["item"]["body"], "new body");
}

#[test]
fn exports_and_backup() {
    let nb = Nb::new();
    nb.ok(&["init", "--example"]);
    let md = nb.ok(&["export", "markdown"]);
    for heading in ["## Tasks", "## Papers", "## Ideas", "## Experiments"] {
        assert!(md.contains(heading), "{heading}");
    }
    assert!(md.contains("Mamba: Linear-Time Sequence Modeling with Selective State Spaces"));
    assert!(md.contains("motivated-by P-1"));
    let json = nb.json(&["export", "json"]);
    assert_eq!(json["items"].as_array().unwrap().len(), 21);
    let bib = nb.ok(&["export", "bibtex"]);
    assert_eq!(bib.matches("@misc{").count(), 4);
    assert!(bib.contains("2312.00752"));

    nb.ok(&["backup", "copy.db"]);
    let copy = nb.dir.path().join("copy.db");
    let list = nb.json(&["--db", copy.to_str().unwrap(), "list"]);
    assert_eq!(list.as_array().unwrap().len(), 21);
    let err = nb.fails(&["backup", "copy.db"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn no_subcommand_prints_status() {
    let nb = Nb::new();
    let out = nb.ok(&[]);
    assert!(out.contains("notebook is empty"), "{out}");
    nb.ok(&["init", "--example"]);
    let out = nb.ok(&[]);
    assert!(out.contains("4 tasks") && out.contains("4 papers"), "{out}");
    nb.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("import"));
}

#[test]
fn author_comes_from_config() {
    let nb = Nb::new();
    std::fs::create_dir_all(nb.dir.path().join("configs")).unwrap();
    std::fs::write(
        nb.dir.path().join("configs/labbook.toml"),
        "[user]\nname = \"Ada Lovelace\"\n",
    )
    .unwrap();
    nb.ok(&["add", "task", "x"]);
    assert_eq!(nb.json(&["show", "T-1"])["item"]["author"], "Ada Lovelace");
    std::fs::write(
        nb.dir.path().join("configs/labbook.toml"),
        "[user]\nnmae = \"typo\"\n",
    )
    .unwrap();
    let err = nb.fails(&["list"]);
    assert!(err.contains("labbook.toml:2"), "{err}");
}

fn smoke_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml")
}

/// `export curves` writes every logged point: the final loss `run` reported is the last
/// `loss` row, steps count up, wall times do not go back.
#[test]
fn export_curves_writes_every_point_as_csv_and_json() {
    let nb = Nb::new();
    let cfg = smoke_config();
    let run = nb.json(&["run", cfg.to_str().unwrap(), "--set", "train.steps=3"]);
    let csv = nb.ok(&["export", "curves", "R-1", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("run,metric,step,wall_time_s,value"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let loss: Vec<&Vec<&str>> = rows.iter().filter(|r| r[1] == "loss").collect();
    assert_eq!(
        loss.iter().map(|r| r[2]).collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    assert!(loss.iter().all(|r| r[0] == "R-1"));
    let last: f64 = loss[2][4].parse().unwrap();
    assert_eq!(last, run["final_metrics"]["loss"].as_f64().unwrap());
    let walls: Vec<f64> = loss.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(walls.windows(2).all(|w| w[0] <= w[1]), "{walls:?}");
    assert!(
        rows.iter().any(|r| r[1] == "eval/acc@16"),
        "every metric by default"
    );
    let json = nb.json(&["export", "curves", "R-1", "-m", "loss", "--format", "json"]);
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["points"].as_array().unwrap().len(), 3);
    let err = nb.fails(&["export", "curves"]);
    assert!(err.contains("needs the runs"), "{err}");
    let err = nb.fails(&["export", "curves", "R-1", "-m", "nope"]);
    assert!(err.contains("no points logged for R-1"), "{err}");
    let err = nb.fails(&["export", "curves", "R-9"]);
    assert!(err.contains("R-9"), "{err}");
}

#[test]
fn run_records_config_metrics_and_outcome() {
    let nb = Nb::new();
    nb.ok(&["add", "experiment", "smoke"]);
    let cfg = smoke_config();
    let out = nb.json(&[
        "run",
        cfg.to_str().unwrap(),
        "--experiment",
        "E-1",
        "--set",
        "train.steps=4",
    ]);
    assert_eq!(out["run"], "R-1");
    assert_eq!(out["status"], "succeeded");
    assert_eq!(out["steps"], 4);
    let loss = out["final_metrics"]["loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    let run = nb.json(&["show", "R-1"]);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["experiment"], "E-1");
    assert_eq!(run["steps_done"], 4);
    assert!(
        run["config"].as_str().unwrap().contains("steps = 4"),
        "the snapshot has the override"
    );
    assert!(
        nb.dir.path().join("runs/R-1").is_dir(),
        "checkpoint directory"
    );
    // Metrics were streamed into the notebook.
    let db = labbook::Store::open(&nb.db(), "t").unwrap();
    let loss = db.metric_series(labbook::model::RunId(1), "loss").unwrap();
    assert_eq!(loss.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn bad_run_requests_fail_before_any_row() {
    let nb = Nb::new();
    nb.ok(&["add", "task", "not an experiment"]);
    let bad = nb.dir.path().join("bad.toml");
    let text = std::fs::read_to_string(smoke_config())
        .unwrap()
        .replace("lr = 3e-3", "lr = 3e-3\nlearning_rate = 1");
    std::fs::write(&bad, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("learning_rate"))
        .unwrap()
        + 1;
    let err = nb.fails(&["run", bad.to_str().unwrap()]);
    assert!(
        err.contains(&format!("bad.toml:{line}")) && err.contains("learning_rate"),
        "{err}"
    );
    let cfg = smoke_config();
    let cfg = cfg.to_str().unwrap();
    let err = nb.fails(&["run", cfg, "--set", "train.nope=1"]);
    assert!(err.contains("nope"), "{err}");
    // A pattern whose length contradicts an explicit n_layers (a pattern alone sets it).
    let err = nb.fails(&[
        "run",
        cfg,
        "--set",
        "model.pattern=MMM",
        "--set",
        "model.n_layers=2",
    ]);
    assert!(err.contains("pattern"), "{err}");
    let err = nb.fails(&["run", cfg, "--set", "model.pattern=MXM"]);
    assert!(err.contains("letter `X`"), "{err}");
    if !cfg!(feature = "cuda") {
        let err = nb.fails(&["run", cfg, "--set", "train.backend=cuda"]);
        assert!(err.contains("--features cuda"), "{err}");
    }
    let err = nb.fails(&["run", cfg, "--experiment", "T-1"]);
    assert!(err.contains("not an experiment"), "{err}");
    let err = nb.fails(&["run", cfg, "--experiment", "E-9"]);
    assert!(err.contains("no item E-9"), "{err}");
    assert_eq!(
        nb.json(&["export", "json"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "no half-made run"
    );
}

/// Polls `labbook show R-n --json` until `done(run)` or the timeout.
fn wait_run(nb: &Nb, run: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let v = nb.json(&["show", run]);
        if done(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{run} did not reach the expected state in {secs}s: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn status_of(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("")
}

/// Steps of [`long_run`]: long enough to cancel or kill it mid-way, short enough to resume to
/// the end. The binary under test has this test's profile: in a release build the smoke
/// model trains at ~2,000 steps/s on an idle 2-core machine (since Step 6), so 400 steps
/// would end before the cancel reaches them; in a debug build the engine is unoptimised.
const LONG_RUN_STEPS: i64 = if cfg!(debug_assertions) { 400 } else { 5000 };

fn long_run(nb: &Nb) -> String {
    let cfg = smoke_config();
    let steps = format!("train.steps={LONG_RUN_STEPS}");
    let out = nb.ok(&[
        "run",
        cfg.to_str().unwrap(),
        "--set",
        &steps,
        "--set",
        "train.eval_every=50",
        "--detach",
    ]);
    out.trim().to_string()
}

#[test]
fn detached_run_cancel_and_resume() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    let run = long_run(&nb);
    assert_eq!(run, "R-1");
    wait_run(&nb, &run, 60, |v| {
        v["steps_done"].as_i64().unwrap_or(0) >= 20
    });
    nb.ok(&["cancel", &run, "--wait", "--timeout", "60"]);
    let v = nb.json(&["show", &run]);
    assert_eq!(status_of(&v), "cancelled", "{v}");
    let stopped_at = v["steps_done"].as_i64().unwrap();
    assert!(stopped_at < LONG_RUN_STEPS);
    assert!(nb.dir.path().join("runs/R-1/state.json").exists());
    let log = std::fs::read_to_string(nb.dir.path().join("runs/R-1/log.txt")).unwrap();
    assert!(log.contains("cancelled after"), "{log}");
    // Cancelling it again names the problem.
    assert!(
        nb.fails(&["cancel", &run])
            .contains("has already ended (cancelled)")
    );
    // Resume continues the same run from its checkpoint to the end.
    nb.ok(&["run", "--resume", &run]);
    let v = nb.json(&["show", &run]);
    assert_eq!(status_of(&v), "succeeded", "{v}");
    assert_eq!(v["steps_done"].as_i64(), Some(LONG_RUN_STEPS));
    let runs = nb.json(&["runs"]);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let text = nb.ok(&["runs"]);
    assert!(text.contains("R-1") && text.contains("succeeded"), "{text}");
}

#[test]
fn kill_9_worker_marks_run_crashed_and_keeps_metrics() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    let run = long_run(&nb);
    // Wait for at least one flush of metrics (every ≤1 s).
    let v = wait_run(&nb, &run, 60, |v| {
        v["steps_done"].as_i64().unwrap_or(0) >= 20
    });
    let pid = v["pid"].as_i64().unwrap();
    let flushed = v["steps_done"].as_i64().unwrap();
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    // The next command notices the dead worker (it is reaped by init, or a zombie).
    let v = wait_run(&nb, &run, 20, |v| status_of(v) == "crashed");
    assert!(v["error"].as_str().unwrap_or("").contains("died"), "{v}");
    assert!(v["steps_done"].as_i64().unwrap() >= flushed);
    let store = labbook::Store::open(&nb.db(), "t").unwrap();
    let loss = store
        .metric_series(labbook::model::RunId(1), "loss")
        .unwrap();
    assert!(loss.len() as i64 >= flushed, "{} < {flushed}", loss.len());
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn concurrent_detached_runs_and_commands_never_see_locks() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    let runs: Vec<String> = (0..3).map(|_| long_run(&nb)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut i = 0;
    loop {
        // Reads and writes from other processes while three workers stream metrics.
        let out = nb
            .cmd()
            .args(["add", "task", &format!("t{i}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !err.contains("locked"), "{err}");
        let out = nb.cmd().args(["runs", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        i += 1;
        if v.as_array()
            .unwrap()
            .iter()
            .all(|r| status_of(r) == "succeeded")
        {
            break;
        }
        assert!(
            v.as_array()
                .unwrap()
                .iter()
                .all(|r| ["queued", "running", "succeeded"].contains(&status_of(r))),
            "{v}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "runs did not finish: {v}"
        );
    }
    for r in &runs {
        let log = std::fs::read_to_string(nb.dir.path().join(format!("runs/{r}/log.txt"))).unwrap();
        assert!(!log.contains("locked"), "{log}");
    }
    let cmp = nb.json(&["compare", "R-1", "R-2"]);
    assert_eq!(
        cmp["keys"].as_array().unwrap().len(),
        0,
        "same config: {cmp}"
    );
    let store = labbook::Store::open(&nb.db(), "t").unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn sweep_runs_the_grid_and_bad_points_add_nothing() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    nb.ok(&["add", "experiment", "lr scan"]);
    let cfg = smoke_config();
    let cfg = cfg.to_str().unwrap();
    // One bad point in the grid: nothing is created.
    let err = nb.fails(&["run", cfg, "--sweep", "model.pattern=MA,XX"]);
    assert!(err.contains("model.pattern"), "{err}");
    assert_eq!(nb.json(&["runs"]).as_array().unwrap().len(), 0);
    let out = nb.ok(&[
        "run",
        cfg,
        "--sweep",
        "train.lr=1e-3,3e-3",
        "--sweep",
        "model.pattern=MA,AM",
        "--parallel",
        "2",
        "-e",
        "E-1",
    ]);
    assert_eq!(out.lines().count(), 4, "{out}");
    for r in ["R-1", "R-2", "R-3", "R-4"] {
        wait_run(&nb, r, 120, |v| status_of(v) == "succeeded");
    }
    let runs = nb.json(&["runs", "--experiment", "E-1"]);
    let sweeps: std::collections::BTreeSet<_> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sweep"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sweeps.len(), 1);
    // Each member is named by its point of the grid, so `runs` tells them apart.
    let mut names: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "smoke lr=1e-3 pattern=AM",
            "smoke lr=1e-3 pattern=MA",
            "smoke lr=3e-3 pattern=AM",
            "smoke lr=3e-3 pattern=MA"
        ]
    );
    assert!(nb.ok(&["runs"]).contains("smoke lr=3e-3 pattern=AM"));
    let cmp = nb.json(&["compare", "R-1", "R-2", "R-3", "R-4"]);
    let keys: Vec<_> = cmp["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["model.pattern", "train.lr"]);
    let text = nb.ok(&["compare", "R-1", "R-4"]);
    assert!(
        text.contains("model.pattern") && text.contains("best loss"),
        "{text}"
    );
}

#[test]
fn detach_with_bad_config_or_backend_fails_before_any_row() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    let cfg = smoke_config();
    let cfg = cfg.to_str().unwrap();
    let err = nb.fails(&["run", cfg, "--set", "train.backend=cuda", "--detach"]);
    assert!(err.contains("cuda"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = nb.fails(&[
        "run",
        cfg,
        "--set",
        "model.n_heads=3",
        "--set",
        "model.d_model=16",
        "--detach",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(nb.json(&["runs"]).as_array().unwrap().len(), 0);
    assert!(!nb.dir.path().join("runs").exists());
    // Resuming a run that never checkpointed is a clear error.
    assert!(nb.fails(&["run", "--resume", "R-9"]).contains("R-9"));
}

#[test]
fn plot_and_report_write_pngs_and_markdown() {
    let nb = Nb::new();
    nb.ok(&["init"]);
    nb.ok(&[
        "add",
        "experiment",
        "pattern scan",
        "--hypothesis",
        "AM beats MA",
    ]);
    let cfg = smoke_config();
    let cfg = cfg.to_str().unwrap();
    nb.ok(&["run", cfg, "-e", "E-1", "--set", "train.steps=20"]);
    nb.ok(&[
        "run",
        cfg,
        "-e",
        "E-1",
        "--set",
        "train.steps=20",
        "--set",
        "model.pattern=AM",
    ]);
    let png = nb.dir.path().join("loss.png");
    nb.ok(&[
        "plot",
        "R-1",
        "R-2",
        "--metric",
        "loss",
        "--out",
        png.to_str().unwrap(),
        "--log",
        "--smooth",
        "3",
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(
        nb.fails(&["plot", "R-1", "--metric", "nope", "--out", "x.png"])
            .contains("nope")
    );
    let out = nb.ok(&["report", "E-1"]);
    assert!(out.contains("report.md"), "{out}");
    let md = std::fs::read_to_string(nb.dir.path().join("reports/E-1/report.md")).unwrap();
    assert!(
        md.contains("AM beats MA") && md.contains("| R-2 |") && md.contains("model.pattern"),
        "{md}"
    );
    assert!(md.contains("![loss](loss.png)"), "{md}");
    assert!(nb.dir.path().join("reports/E-1/loss.png").exists());
}

#[test]
fn finished_run_of_a_synced_experiment_leaves_one_summary_comment() {
    let nb = Nb::new();
    nb.ok(&["add", "experiment", "synced"]);
    nb.ok(&["add", "experiment", "local only"]);
    // Mark E-1 as linked to issue #7, as `labbook sync` would after creating it.
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"insert into gh_issues (item_id, repo, number, snapshot, synced_at) select id, 'o/r', 7, '{}', 'x' from items where kind='experiment' and num=1\"); c.commit()",
            nb.db().to_str().unwrap(),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let cfg = smoke_config();
    for exp in ["E-1", "E-2"] {
        nb.ok(&[
            "run",
            cfg.to_str().unwrap(),
            "--experiment",
            exp,
            "--set",
            "train.steps=2",
        ]);
    }
    let synced = nb.json(&["show", "E-1"]);
    let comments = synced["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let body = comments[0]["body"].as_str().unwrap();
    assert!(body.contains("R-1") && body.contains("loss"), "{body}");
    assert_eq!(
        nb.json(&["show", "E-2"])["comments"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn bench_train_prints_a_line_or_json() {
    let nb = Nb::new();
    let args = [
        "bench",
        "train",
        "--d-model",
        "8",
        "--layers",
        "1",
        "--seq-len",
        "8",
        "--batch",
        "2",
        "--steps",
        "2",
    ];
    let text = nb.ok(&args);
    assert!(
        text.starts_with("mamba (M), d_model 8, layers 1, seq_len 8, batch 2, cpu")
            && text.contains("ms/step"),
        "{text}"
    );
    let v = nb.json(&args);
    assert_eq!(v["pattern"], "M");
    assert!(v["ms_per_step"].as_f64().unwrap() > 0.0, "{v}");
    let err = nb.fails(&["bench", "train", "--model", "rnn", "--steps", "1"]);
    assert!(err.contains("unknown model `rnn`"), "{err}");
}

/// `bench store` (like every bench) prints a summary for people and JSON with `--json`.
#[test]
fn bench_store_prints_a_summary_or_json() {
    let nb = Nb::new();
    let args = [
        "bench",
        "store",
        "--items",
        "40",
        "--metrics",
        "200",
        "--batch",
        "50",
        "--searches",
        "3",
    ];
    let text = nb.ok(&args);
    assert!(text.starts_with("bench store"), "{text}");
    assert!(!text.trim_start().starts_with('{'), "{text}");
    let v = nb.json(&args);
    assert!(v.is_object(), "{v}");
    // The summary names every field of the JSON report.
    for key in v.as_object().unwrap().keys() {
        assert!(text.contains(key.as_str()), "{key} missing from:\n{text}");
    }
}

/// A closed stdout (`labbook … | head -1`) ends the program quietly with success, for
/// plain text and for `--json`.
#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    let nb = Nb::new();
    nb.ok(&["init", "--example"]);
    for args in [
        &["export", "markdown"][..],
        &["show", "E-1"],
        &["search", "mamba"],
        &["export", "json"],
        &["list", "--json"],
        &["list"],
    ] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("labbook"))
            .current_dir(nb.dir.path())
            .env_remove("LABBOOK_DB")
            .env_remove("LABBOOK_CONFIG")
            .env("LABBOOK_LOG_FILE", nb.dir.path().join("labbook.log"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// Usage errors stay one line but say what is missing or allowed.
#[test]
fn usage_errors_name_the_missing_argument() {
    let nb = Nb::new();
    for (args, want) in [
        (&["plot"][..], "<R-n>"),
        (&["show"], "<ID>"),
        (&["link", "T-1"], "<"),
        (&["export", "csv"], "markdown"),
    ] {
        let out = nb.cmd().args(args).assert().code(2);
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.trim_end().ends_with(':'), "{args:?}: {err}");
    }
}

/// A config named with `--config` (or `LABBOOK_CONFIG`) must exist.
#[test]
fn a_missing_explicit_config_is_an_error() {
    let nb = Nb::new();
    let err = nb.fails(&["--config", "nope.toml", "list"]);
    assert!(
        err.contains("nope.toml") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!nb.db().exists(), "nothing was created");
    let err = String::from_utf8(
        nb.cmd()
            .env("LABBOOK_CONFIG", "also-nope.toml")
            .arg("list")
            .assert()
            .failure()
            .get_output()
            .stderr
            .clone(),
    )
    .unwrap();
    assert!(err.contains("also-nope.toml"), "{err}");
}

/// `--set` overrides are validated together, in any order; a short run of a config with
/// a long warm-up runs with a warning instead of failing.
#[test]
fn set_overrides_are_validated_once_in_any_order() {
    let nb = Nb::new();
    let smoke =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml"))
            .unwrap();
    let long = smoke
        .replace("steps = 5", "steps = 500")
        .replace("warmup_steps = 1", "warmup_steps = 100");
    assert_ne!(long, smoke);
    std::fs::write(nb.dir.path().join("long.toml"), long).unwrap();
    for sets in [
        ["train.steps=4", "train.warmup_steps=2"],
        ["train.warmup_steps=2", "train.steps=4"],
    ] {
        let out = nb
            .cmd()
            .args(["run", "long.toml", "--set", sets[0], "--set", sets[1]])
            .assert()
            .success();
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(!err.contains("warning"), "{err}");
    }
    let out = nb
        .cmd()
        .args(["run", "long.toml", "--set", "train.steps=4"])
        .assert()
        .success();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("warmup_steps shortened to 0"), "{err}");
    // A hybrid's depth: the pattern implies its layer count, in either order with it.
    for sets in [
        vec!["model.pattern=MMMA"],
        vec!["model.pattern=MMAA", "model.n_layers=4"],
        vec!["model.n_layers=4", "model.pattern=MAMA"],
    ] {
        let mut args = vec!["run", "long.toml", "--set", "train.steps=2"];
        for s in &sets {
            args.extend(["--set", s]);
        }
        nb.cmd().args(&args).assert().success();
    }
    let runs = nb.json(&["runs"]);
    assert_eq!(runs.as_array().unwrap().len(), 6, "{runs}");
}

/// Messages read as English: "an experiment", "has already ended".
#[test]
fn messages_use_the_right_article() {
    let nb = Nb::new();
    nb.ok(&["add", "experiment", "Probe"]);
    nb.ok(&["add", "idea", "Spark"]);
    let err = nb.fails(&["edit", "E-1", "--status", "nope"]);
    assert!(err.contains("is not an experiment status"), "{err}");
    let err = nb.fails(&["edit", "I-1", "--status", "nope"]);
    assert!(err.contains("is not an idea status"), "{err}");
    let err = nb.fails(&["edit", "T-9", "--status", "nope"]);
    assert!(
        !err.contains("a experiment") && !err.contains("a idea"),
        "{err}"
    );
}

/// A run records what reproduces it: the project's commit and its uncommitted changes,
/// untracked files included; labbook's own version and build; the CPU and threads.
/// `compare` shows where two runs differ in these.
#[test]
fn a_run_records_its_diff_with_untracked_files_and_its_environment() {
    let nb = Nb::new();
    let dir = nb.dir.path();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(dir.join(".gitignore"), "tracker.db*\nruns/\n*.log\n").unwrap();
    std::fs::write(dir.join("model.rs"), "fn committed() {}\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    std::fs::write(dir.join("model.rs"), "fn committed() { changed() }\n").unwrap();
    std::fs::write(dir.join("new_layer.rs"), "fn brand_new_layer() {}\n").unwrap();
    std::fs::write(dir.join("weights.bin"), [0u8, 159, 146, 150]).unwrap();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    let smoke = smoke.to_str().unwrap();
    nb.cmd()
        .env("RAYON_NUM_THREADS", "1")
        .args(["run", smoke])
        .assert()
        .success();
    nb.cmd()
        .env("RAYON_NUM_THREADS", "2")
        .args(["run", smoke])
        .assert()
        .success();
    let v = nb.json(&["show", "R-1"]);
    let diff = v["git_diff"].as_str().unwrap();
    assert!(diff.contains("+fn committed() { changed() }"), "{diff}");
    assert!(
        diff.contains("+fn brand_new_layer() {}"),
        "untracked file missing: {diff}"
    );
    assert!(diff.contains("untracked binary file weights.bin"), "{diff}");
    assert!(
        !diff.contains("tracker.db"),
        "ignored files are left out: {diff}"
    );
    let env = &v["environment"];
    assert_eq!(env["labbook_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(env["threads"], 1);
    assert!(env["os"].as_str().unwrap().contains('-'), "{env}");
    let text = nb.ok(&["show", "R-1"]);
    assert!(
        text.contains(&format!("labbook {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let cmp = nb.json(&["compare", "R-1", "R-2"]);
    let keys: Vec<&str> = cmp["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(keys.contains(&"run.threads"), "{cmp}");
    assert!(!keys.contains(&"run.commit"), "same commit: {cmp}");
}

/// A command run where there is no notebook says, once, that it created one.
#[test]
fn creating_a_notebook_is_said_once() {
    let nb = Nb::new();
    let out = nb.cmd().arg("list").assert().success();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(err.trim(), "created ./tracker.db");
    let out = nb.cmd().arg("list").assert().success();
    assert!(out.get_output().stderr.is_empty());
}

/// Text without spaces between words (CJK) and emoji are found as substrings; an English
/// plural is found from its singular, exact matches first — in the CLI as in the TUI, which
/// calls the same `Store::search`.
#[test]
fn search_finds_cjk_emoji_and_longer_forms_of_the_last_word() {
    let nb = Nb::new();
    nb.ok(&["add", "idea", "日本語テスト"]);
    nb.ok(&["add", "task", "Launch 🚀 the sweep"]);
    nb.ok(&["add", "idea", "Hybrids of Mamba and attention"]);
    nb.ok(&["add", "idea", "A hybrid block"]);
    let ids = |q: &[&str]| -> Vec<String> {
        let mut args = vec!["search"];
        args.extend_from_slice(q);
        nb.json(&args)
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["日本語"]), ["I-1"]);
    assert_eq!(ids(&["テスト"]), ["I-1"]);
    assert_eq!(ids(&["🚀"]), ["T-1"]);
    assert_eq!(ids(&["launch", "🚀"]), ["T-1"]);
    assert!(ids(&["🚀", "nowhere"]).is_empty());
    assert_eq!(
        ids(&["hybrid"]),
        ["I-3", "I-2"],
        "the exact word first, then the plural"
    );
    assert!(nb.ok(&["search", "日本語"]).contains("[日本語]テスト"));
}

#[test]
fn an_empty_search_query_is_an_error() {
    let nb = Nb::new();
    nb.ok(&["add", "task", "something"]);
    for q in ["", "   "] {
        let err = nb.fails(&["search", q]);
        assert!(err.contains("search query is empty"), "{err}");
    }
}

/// `report` shows every eval metric, ordered by length as a number (not as text).
#[test]
fn report_shows_every_eval_length_in_numeric_order() {
    let nb = Nb::new();
    nb.ok(&["add", "experiment", "lengths"]);
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    nb.ok(&[
        "run",
        smoke.to_str().unwrap(),
        "-e",
        "E-1",
        "--set",
        "task.eval_seq_lens=[128, 16, 64, 32]",
    ]);
    nb.ok(&["report", "E-1"]);
    let dir = nb.dir.path().join("reports/E-1");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let header = md
        .lines()
        .find(|l| l.starts_with("| run |"))
        .expect("a runs table");
    let at = |n: &str| {
        header
            .find(&format!("best eval/acc@{n} "))
            .unwrap_or_else(|| panic!("@{n} missing: {header}"))
    };
    assert!(
        at("16") < at("32") && at("32") < at("64") && at("64") < at("128"),
        "{header}"
    );
    for n in ["16", "32", "64", "128"] {
        assert!(
            dir.join(format!("eval_acc_{n}.png")).exists(),
            "@{n} not drawn"
        );
    }
}

/// `show E-n` lists the runs recorded under the experiment, newest first.
#[test]
fn an_experiment_shows_its_runs_newest_first() {
    let nb = Nb::new();
    nb.ok(&["add", "experiment", "with runs"]);
    nb.ok(&["add", "experiment", "without"]);
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    let smoke = smoke.to_str().unwrap();
    nb.ok(&["run", smoke, "-e", "E-1"]);
    nb.ok(&["run", smoke]);
    nb.ok(&["run", smoke, "-e", "E-1"]);
    let text = nb.ok(&["show", "E-1"]);
    let listed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Runs"))
        .skip(1)
        .take_while(|l| l.starts_with("  R-"))
        .collect();
    assert_eq!(listed.len(), 2, "{text}");
    assert!(
        listed[0].contains("R-3") && listed[1].contains("R-1"),
        "{text}"
    );
    assert!(
        listed[0].contains("succeeded") && listed[0].contains("best eval/acc@32"),
        "{text}"
    );
    let v = nb.json(&["show", "E-1"]);
    assert_eq!(v["runs"][0]["run"], "R-3");
    assert!(!nb.ok(&["show", "E-2"]).contains("Runs"));
}

/// `edit` takes the same field flags as `add`; priorities and years are range-checked.
#[test]
fn edit_takes_the_field_flags_and_ranges_are_checked() {
    let nb = Nb::new();
    nb.ok(&["add", "task", "t", "--priority", "3"]);
    nb.ok(&["edit", "T-1", "--priority", "2", "--assignee", "bob"]);
    let v = nb.json(&["show", "T-1"]);
    assert_eq!(v["item"]["priority"], 2);
    assert_eq!(v["item"]["assignee"], "bob");
    for bad in ["0", "6", "high"] {
        let err = nb.fails(&["edit", "T-1", "--priority", bad]);
        assert!(
            err.contains("from 1 (highest) to 5") && err.contains(bad),
            "{err}"
        );
    }
    nb.ok(&["edit", "T-1", "--assignee", ""]);
    assert!(nb.json(&["show", "T-1"])["item"]["assignee"].is_null());
    let err = nb.fails(&["add", "paper", "p", "--year", "3023"]);
    assert!(err.contains("from 1000 to 2100"), "{err}");
    nb.ok(&["add", "paper", "p", "--year", "2024", "--venue", "ICML"]);
    nb.ok(&["edit", "P-1", "--year", "2023"]);
    assert_eq!(nb.json(&["show", "P-1"])["item"]["year"], 2023);
    nb.ok(&["add", "experiment", "e"]);
    nb.ok(&["edit", "E-1", "--conclusion", "it works"]);
    assert_eq!(nb.json(&["show", "E-1"])["item"]["conclusion"], "it works");
    let help = nb.ok(&["edit", "--help"]);
    for flag in [
        "--title <TITLE>",
        "New title",
        "--status",
        "New status",
        "--priority",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

/// `init --example` writes the example run configs, never over a file that is there.
#[test]
fn init_example_writes_the_run_configs_without_overwriting() {
    let nb = Nb::new();
    std::fs::create_dir_all(nb.dir.path().join("configs")).unwrap();
    std::fs::write(nb.dir.path().join("configs/smoke.toml"), "# mine\n").unwrap();
    let v = nb.json(&["init", "--example"]);
    let written: Vec<&str> = v["configs_written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(written.contains(&"induction-heads-mamba.toml"), "{v}");
    assert!(!written.contains(&"smoke.toml"), "{v}");
    assert_eq!(
        std::fs::read_to_string(nb.dir.path().join("configs/smoke.toml")).unwrap(),
        "# mine\n"
    );
    nb.ok(&[
        "run",
        "configs/selective-copying-mamba.toml",
        "--set",
        "train.steps=2",
    ]);
    let show = nb.ok(&["show", "E-1"]);
    assert!(
        show.contains("configs/selective-copying-mamba-lti.toml"),
        "{show}"
    );
}

/// Every shipped run config trains (two steps, evaluated at its training length): the
/// long runs are not in CI, a broken config is.
#[test]
fn every_shipped_config_runs_a_short_smoke() {
    let nb = Nb::new();
    // Text configs read data/corpus.txt from the directory labbook runs in.
    std::fs::create_dir_all(nb.dir.path().join("data")).unwrap();
    let text = "The selective scan keeps a state per channel. ".repeat(200);
    std::fs::write(nb.dir.path().join("data/corpus.txt"), text).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".toml") || name == "labbook.toml" {
            continue;
        }
        let cfg = std::fs::read_to_string(&path).unwrap();
        let seq_len = cfg
            .lines()
            .find_map(|l| l.strip_prefix("seq_len = "))
            .unwrap_or("64")
            .trim()
            .to_string();
        let out = nb
            .cmd()
            .args(["run", path.to_str().unwrap()])
            .args(["--set", "train.steps=2", "--set", "train.eval_every=0"])
            .args(["--set", &format!("task.eval_seq_lens=[{seq_len}]")])
            .args(["--set", "task.eval_samples=4", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "succeeded", "{name}: {v}");
        ran += 1;
    }
    assert!(ran >= 7, "only {ran} configs");
}

/// BibTeX export → import → export is a fixed point: on the example notebook, and on a
/// file with LaTeX in titles, `and others` and a conference venue.
#[test]
fn bibtex_round_trips_to_a_fixed_point() {
    let held_out = r#"@inproceedings{x2024alpha,
  title = {The $\alpha$-entmax of {Mamba} models: $\mathcal{O}(n)$},
  author = {Ada Lovelace and Hofit Bata and others},
  booktitle = {ICML},
  year = {2024}
}

@article{y2023,
  title = {Selective {State} Spaces},
  author = {Albert Gu and Tri Dao},
  journal = {arXiv preprint arXiv:2312.00752},
  year = {2023}
}
"#;
    let round = |setup: &dyn Fn(&Nb)| {
        let a = Nb::new();
        setup(&a);
        a.ok(&["export", "bibtex", "-o", "one.bib"]);
        let one = std::fs::read_to_string(a.dir.path().join("one.bib")).unwrap();
        let b = Nb::new();
        std::fs::write(b.dir.path().join("one.bib"), &one).unwrap();
        b.ok(&["import", "bibtex", "one.bib"]);
        b.ok(&["export", "bibtex", "-o", "two.bib"]);
        let two = std::fs::read_to_string(b.dir.path().join("two.bib")).unwrap();
        assert_eq!(one, two, "not a fixed point");
        (one, b)
    };
    let (example, _) = round(&|nb: &Nb| {
        nb.ok(&["init", "--example"]);
    });
    assert!(!example.contains("et al."), "{example}");
    assert!(
        !example.contains("@misc") || !example.contains("journal ="),
        "{example}"
    );
    let (latex, b) = round(&|nb: &Nb| {
        std::fs::write(nb.dir.path().join("in.bib"), held_out).unwrap();
        nb.ok(&["import", "bibtex", "in.bib"]);
    });
    assert!(
        latex.contains(r"$\alpha$") && !latex.contains(r"\\alpha"),
        "{latex}"
    );
    assert!(latex.contains("and others"), "{latex}");
    let paper = b.json(&["show", "P-1"]);
    assert_eq!(paper["item"]["authors"], "Ada Lovelace, Hofit Bata, et al.");
    assert_eq!(paper["item"]["venue"], "ICML");
}

/// A missing brace is reported at its entry, and a file that is not BibTeX is an error.
#[test]
fn bibtex_errors_point_at_the_broken_entry() {
    let nb = Nb::new();
    std::fs::write(
        nb.dir.path().join("m.bib"),
        "@article{good1,\n  title = {Fine},\n  year = {2020}\n}\n\n@article{bad,\n  title = {Unclosed,\n  year = {2021}\n}\n\n@article{good2,\n  title = {Also fine},\n  year = {2022}\n}\n",
    )
    .unwrap();
    let err = nb.fails(&["import", "bibtex", "m.bib"]);
    assert!(err.contains("m.bib:6:") && err.contains("`bad`"), "{err}");
    std::fs::write(nb.dir.path().join("n.bib"), "hello\nthis is not bibtex\n").unwrap();
    let err = nb.fails(&["import", "bibtex", "n.bib"]);
    assert!(
        err.contains("n.bib:1:") && err.contains("no BibTeX entries"),
        "{err}"
    );
}

/// Plot fixes: a one-point series is drawn, a name without extension gets `.png`, another
/// extension and an unknown metric are refused with what works, and labels show every
/// config key that differs (shortest first).
#[test]
fn plots_take_single_points_bare_names_and_say_what_works() {
    let nb = Nb::new();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    let smoke = smoke.to_str().unwrap();
    for (lr, seed, clip, bs) in [("1e-3", "0", "1.0", "4"), ("3e-3", "1", "0.5", "2")] {
        nb.ok(&[
            "run",
            smoke,
            "--set",
            &format!("train.lr={lr}"),
            "--set",
            &format!("train.seed={seed}"),
            "--set",
            &format!("train.grad_clip={clip}"),
            "--set",
            &format!("train.batch_size={bs}"),
        ]);
    }
    std::fs::create_dir_all(nb.dir.path().join("plots")).unwrap();
    // eval/acc@16 is logged once per run (at the end): one point each.
    let out = nb.ok(&[
        "plot",
        "R-1",
        "R-2",
        "--metric",
        "eval/acc@16",
        "--out",
        "plots/noext",
    ]);
    assert!(out.contains("plots/noext.png"), "{out}");
    let png = std::fs::read(nb.dir.path().join("plots/noext.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let err = nb.fails(&["plot", "R-1", "--out", "fig.gif"]);
    assert!(err.contains("fig.gif") && err.contains(".png"), "{err}");
    let err = nb.fails(&["plot", "R-1", "--metric", "acc", "--out", "a.png"]);
    assert!(
        err.contains("logged metrics:") && err.contains("loss") && err.contains("eval/acc@16"),
        "{err}"
    );
    let store = labbook::Store::open(&nb.db(), "t").unwrap();
    let ids = [labbook::model::RunId(1), labbook::model::RunId(2)];
    let opts = labbook::report::CurveOptions {
        smooth: 1,
        ..Default::default()
    };
    let curves = labbook::report::curves(&store, &ids, "loss", opts).unwrap();
    let label = &curves[1].label;
    for kv in ["lr=0.003", "seed=1", "grad_clip=0.5", "batch_size=2"] {
        assert!(label.contains(kv), "{kv} missing from {label:?}");
    }
    assert!(
        label.find("lr=").unwrap() < label.find("batch_size=").unwrap(),
        "{label}"
    );
}

/// Seeds of one setting are drawn as one mean curve with a ±1 sd band and summarised by
/// `compare` as mean ± sd; plots are also written as SVG and against wall time.
#[test]
fn seed_groups_plot_as_a_band_and_compare_as_mean_and_sd() {
    let nb = Nb::new();
    let smoke = smoke_config();
    let smoke = smoke.to_str().unwrap();
    for (lr, seed) in [("3e-3", "0"), ("3e-3", "1"), ("3e-3", "2"), ("1e-3", "0")] {
        nb.ok(&[
            "run",
            smoke,
            "--set",
            &format!("train.lr={lr}"),
            "--set",
            &format!("train.seed={seed}"),
        ]);
    }
    let runs = ["R-1", "R-2", "R-3", "R-4"];
    let svg_of = |extra: &[&str]| -> String {
        let mut args = vec!["plot"];
        args.extend_from_slice(&runs);
        args.extend_from_slice(&["--out", "fig.svg"]);
        args.extend_from_slice(extra);
        nb.ok(&args);
        std::fs::read_to_string(nb.dir.path().join("fig.svg")).unwrap()
    };
    let grouped = svg_of(&["--group-seeds"]);
    assert!(
        grouped.contains("R-1,R-2,R-3 (n=3, ±1 sd) lr=0.003"),
        "{grouped}"
    );
    assert!(grouped.contains("R-4 lr=0.001"), "{grouped}");
    assert!(
        !grouped.contains("seed="),
        "the seed is what the band averages over"
    );
    assert!(grouped.contains("<polygon"), "the ±1 sd band");
    let apart = svg_of(&[]);
    assert!(apart.contains("R-2 lr=0.003 seed=1"), "{apart}");
    assert!(!apart.contains("<polygon"));
    assert!(svg_of(&["--x", "time"]).contains("wall time (s)"));
    let err = nb.fails(&["plot", "R-1", "--out", "fig.pdf"]);
    assert!(err.contains(".svg"), "{err}");

    let cmp = nb.json(&["compare", "R-1", "R-2", "R-3", "R-4"]);
    let groups = cmp["seed_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{cmp}");
    assert_eq!(groups[0]["runs"], serde_json::json!(["R-1", "R-2", "R-3"]));
    let losses: Vec<f64> = (1..=3)
        .map(|i| {
            nb.json(&["show", &format!("R-{i}")])["final_metrics"]["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let mean = losses.iter().sum::<f64>() / 3.0;
    let sd = (losses.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    let got = &groups[0]["final_metrics"]["loss"];
    assert!(
        (got[0].as_f64().unwrap() - mean).abs() < 1e-12,
        "{got} vs {mean}"
    );
    assert!(
        (got[1].as_f64().unwrap() - sd).abs() < 1e-12,
        "{got} vs {sd}"
    );
    assert_eq!(got[2], 3);
    let text = nb.ok(&["compare", "R-1", "R-2", "R-3", "R-4"]);
    assert!(text.contains("seeds R-1, R-2, R-3"), "{text}");
    assert!(text.contains("(n=3)"), "{text}");
}

//! Finding the notebook (`tracker.db`) and the app config (`configs/labbook.toml`),
//! and who the current author is.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DB_FILE: &str = "tracker.db";
pub const CONFIG_FILE: &str = "configs/labbook.toml";

/// The app config. Unknown keys are errors so typos do not go unnoticed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    #[serde(default)]
    pub user: UserConfig,
    /// Sections owned by later features; kept as raw tables until they are read.
    #[serde(default)]
    pub keys: Option<toml::Table>,
    #[serde(default)]
    pub theme: Option<toml::Table>,
    #[serde(default)]
    pub github: Option<GithubConfig>,
    #[serde(default)]
    pub runner: Option<RunnerConfig>,
}

/// `[runner]`: the GPU machine's side of remote runs (`labbook runner`, see
/// `docs/remote-runs.md`). Durations are written like `"90s"`, `"10m"`, `"1h"`, `"500ms"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    /// GitHub logins whose run requests are run; everyone else's are refused.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Where commits are fetched from; default `https://github.com/OWNER/NAME.git`.
    #[serde(default)]
    pub clone_url: Option<String>,
    /// Build command run in the checkout; default `cargo build --release`
    /// (plus `--features cuda` for CUDA requests).
    #[serde(default)]
    pub build: Option<Vec<String>>,
    /// The labbook binary that runs the config, relative to the checkout unless absolute;
    /// default `target/release/labbook`.
    #[serde(default)]
    pub bin: Option<String>,
    /// How long a claim holds without renewal (a crashed runner's requests are free again
    /// after this).
    #[serde(default = "default_lease")]
    pub lease: String,
    /// How often the status comment is updated while a run trains.
    #[serde(default = "default_status_every")]
    pub status_every: String,
    /// Name shown in claims and results; default the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// More environment variables passed to git, the build and the job, beyond the
    /// allow-list (`PATH`, `HOME`, `USER`, `LANG`, `LC_*`, `TMPDIR`, `CUDA_*`,
    /// `LD_LIBRARY_PATH`, `CARGO_HOME`, `RUSTUP_HOME`); everything else is cleared.
    #[serde(default)]
    pub env: Vec<String>,
    /// A job running longer is stopped and reported failed; `"0"` = no limit.
    #[serde(default = "default_max_job_time")]
    pub max_job_time: String,
    /// Prepended to the build and the job commands (`systemd-run --user --scope …`,
    /// `bwrap …`); see docs/remote-runs.md.
    #[serde(default)]
    pub wrap: Vec<String>,
    /// Largest job log kept on disk (`"1GiB"`, `"200MiB"`); past it the start and the end
    /// are kept.
    #[serde(default = "default_max_log")]
    pub max_log: String,
    /// Where the training step runs: `"local"` (default) or `"slurm"` (submitted with
    /// `sbatch`, see `[runner.slurm]`).
    #[serde(default)]
    pub executor: Executor,
    /// `sbatch` settings for `executor = "slurm"`.
    #[serde(default)]
    pub slurm: SlurmConfig,
}

/// `[runner] executor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    #[default]
    Local,
    Slurm,
}

/// `[runner.slurm]`: the options of the job script (`#SBATCH` lines).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time` in Slurm's format (`"90"` minutes, `"1-00:00:00"`); default: `max_job_time`.
    pub time: Option<String>,
    /// `--gres=gpu:N`; default: the GPUs the request asks for.
    pub gpus_per_job: Option<u32>,
    pub cpus_per_gpu: Option<u32>,
    /// `--mem` (`"64G"`).
    pub mem: Option<String>,
    /// More options, one `#SBATCH` line each (`["--constraint=a100", "--exclusive"]`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// How often the job's state is read (default `"5s"`).
    pub poll: Option<String>,
}

fn default_lease() -> String {
    "10m".into()
}
fn default_status_every() -> String {
    "60s".into()
}
fn default_max_job_time() -> String {
    "24h".into()
}
fn default_max_log() -> String {
    "1GiB".into()
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            allow: Vec::new(),
            clone_url: None,
            build: None,
            bin: None,
            lease: default_lease(),
            status_every: default_status_every(),
            name: None,
            env: Vec::new(),
            max_job_time: default_max_job_time(),
            wrap: Vec::new(),
            max_log: default_max_log(),
            executor: Executor::Local,
            slurm: SlurmConfig::default(),
        }
    }
}

/// Parses `"500ms"`, `"90s"`, `"10m"`, `"2h"` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| Error::Invalid(format!("`{text}` is not a duration (e.g. 90s, 10m, 1h)")))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(Error::Invalid(format!(
                "`{text}` is not a duration (units: ms, s, m, h)"
            )));
        }
    };
    // Polls, leases and status rates: a month is plenty, and keeps `now + d` in range.
    const MAX_SECS: f64 = 30.0 * 86_400.0;
    if secs > MAX_SECS {
        return Err(Error::Invalid(format!(
            "`{text}` is too long for a duration (at most 30 days)"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Parses a size: `"1GiB"`, `"200MiB"`, `"64KiB"`, `"5MB"`, `"1000"` (bytes).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || Error::Invalid(format!("`{text}` is not a size (e.g. 1GiB, 200MiB, 64KiB)"));
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(bad)?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = n * mult;
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `[github]`: which repository `labbook sync` keeps in step with the notebook.
/// The token is never part of the config (see `docs/github.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// `owner/name`.
    pub repo: String,
    /// REST API root: `https://api.github.com`, `https://HOST/api/v3` for GitHub Enterprise.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Item kinds that become issues.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<crate::model::Kind>,
    /// Minimum pause between two writes (POST/PATCH), as GitHub asks of integrations.
    #[serde(default = "default_write_interval_ms")]
    pub write_interval_ms: u64,
    /// Per-request timeout.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries of a failed read or idempotent write (5xx, timeouts, dropped connections).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The longest rate-limit wait `sync` sits through before giving up (it resumes later).
    #[serde(default = "default_max_wait_secs")]
    pub max_wait_secs: u64,
    /// GitHub logins whose claims and results count (the team's runner accounts). Empty:
    /// anyone with write access to the repo may act as a runner.
    #[serde(default)]
    pub runners: Vec<String>,
    /// Keep a "Lab notebook" issue whose body is the notebook's overview (items of `kinds`
    /// only, each linked to its issue), regenerated by every sync.
    #[serde(default = "default_notebook")]
    pub notebook: bool,
}

fn default_notebook() -> bool {
    true
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}
fn default_kinds() -> Vec<crate::model::Kind> {
    crate::model::Kind::ALL.to_vec()
}
fn default_write_interval_ms() -> u64 {
    1000
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}
fn default_max_wait_secs() -> u64 {
    900
}

impl GithubConfig {
    /// A config for `repo` at `api_url` with the defaults for everything else.
    pub fn new(repo: &str, api_url: &str) -> GithubConfig {
        GithubConfig {
            repo: repo.into(),
            api_url: api_url.into(),
            kinds: default_kinds(),
            write_interval_ms: default_write_interval_ms(),
            timeout_secs: default_timeout_secs(),
            retries: default_retries(),
            max_wait_secs: default_max_wait_secs(),
            runners: Vec::new(),
            notebook: default_notebook(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: Option<String>,
}

impl AppConfig {
    /// Parses config text; errors name the file and line.
    pub fn parse(text: &str, file: &Path) -> Result<AppConfig> {
        toml::from_str(text).map_err(|e| Error::Parse {
            file: file.display().to_string(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            msg: e.message().to_string(),
        })
    }

    /// Loads `path` if it exists, else the default config.
    pub fn load(path: &Path) -> Result<AppConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => AppConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AppConfig::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Where the notebook is: `explicit` (from `--db` or `LABBOOK_DB`), else the nearest
/// `tracker.db` in `start` or its parents (like git finds `.git`), else `start/tracker.db`.
pub fn discover_db(explicit: Option<&Path>, start: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    start
        .ancestors()
        .map(|d| d.join(DB_FILE))
        .find(|p| p.is_file())
        .unwrap_or_else(|| start.join(DB_FILE))
}

/// The config that belongs to a notebook: `LABBOOK_CONFIG` if set, else
/// `configs/labbook.toml` beside the notebook, else in the nearest parent that has one.
pub fn discover_config(explicit: Option<&Path>, db: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = dir.canonicalize().unwrap_or(dir);
    dir.ancestors()
        .map(|d| d.join(CONFIG_FILE))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join(CONFIG_FILE))
}

/// Author name: `[user] name` from the config, else `git config user.name`, else `$USER`.
pub fn author(config: &AppConfig) -> String {
    if let Some(name) = config
        .user
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return name.to_string();
    }
    let git = crate::git::line(None, &["config", "user.name"]);
    git.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_db_in_parent_like_git() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(discover_db(None, &deep), deep.join(DB_FILE));
        std::fs::write(root.path().join(DB_FILE), b"").unwrap();
        assert_eq!(discover_db(None, &deep), root.path().join(DB_FILE));
        let explicit = Path::new("/x/y.db");
        assert_eq!(discover_db(Some(explicit), &deep), explicit);
    }

    #[test]
    fn config_errors_name_file_and_line() {
        let text = "[user]\nname = \"ada\"\nnmae = \"typo\"\n";
        let err = AppConfig::parse(text, Path::new("configs/labbook.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("configs/labbook.toml:3:"), "{msg}");
        let ok = AppConfig::parse("[user]\nname = \"ada\"\n", Path::new("x")).unwrap();
        assert_eq!(author(&ok), "ada");
    }

    #[test]
    fn github_section_is_typed() {
        let text = "[github]\nrepo = \"lab/nb\"\nkinds = [\"task\", \"idea\"]\n";
        let cfg = AppConfig::parse(text, Path::new("x")).unwrap();
        let gh = cfg.github.unwrap();
        assert_eq!(gh.repo, "lab/nb");
        assert_eq!(gh.api_url, "https://api.github.com");
        assert_eq!(gh.kinds.len(), 2);
        assert!(gh.runners.is_empty());
        let err = AppConfig::parse("[github]\nrepo = \"a/b\"\ntoken = \"x\"\n", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token"), "{err}");
    }

    #[test]
    fn runner_section_is_typed() {
        let text = "[runner]\nallow = [\"alice\"]\nlease = \"2s\"\n";
        let cfg = AppConfig::parse(text, Path::new("x")).unwrap();
        let r = cfg.runner.unwrap();
        assert_eq!(r.allow, vec!["alice"]);
        assert_eq!(parse_duration(&r.lease).unwrap().as_secs(), 2);
        assert_eq!(parse_duration(&r.status_every).unwrap().as_secs(), 60);
        assert!(AppConfig::parse("[runner]\nalow = []\n", Path::new("x")).is_err());
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        for bad in [
            "99999999999999999999h",
            "1e400",
            "31d",
            "-1s",
            "soon",
            "721h",
        ] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(parse_duration("720h").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(r.max_job_time, "24h");
        assert_eq!(parse_size(&r.max_log).unwrap(), 1 << 30);
        assert_eq!(parse_size("200MiB").unwrap(), 200 << 20);
        assert_eq!(parse_size("5MB").unwrap(), 5_000_000);
        assert!(parse_size("lots").unwrap_err().to_string().contains("lots"));
        let r = AppConfig::parse(
            "[runner]\nenv = [\"DATA\"]\nwrap = [\"bwrap\"]\nmax_job_time = \"0\"\n",
            Path::new("x"),
        )
        .unwrap()
        .runner
        .unwrap();
        assert_eq!((r.env, r.wrap), (vec!["DATA".into()], vec!["bwrap".into()]));
        assert!(parse_duration(&r.max_job_time).unwrap().is_zero());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}

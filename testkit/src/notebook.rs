//! Notebook-side fixtures shared by the tests that run `labbook` against the fake: the
//! `[github]` table that points a notebook at it, and a command that cannot pick up the
//! developer's own notebook, config or token.
use std::process::{Command, Stdio};

/// The `[github]` table of a labbook config for `repo` served at `api_url` (the fake),
/// tuned for tests: no write pacing, a short timeout. `extra` lines go inside the table.
pub fn github_table(repo: &str, api_url: &str, extra: &str) -> String {
    format!(
        "[github]\nrepo = \"{repo}\"\napi_url = \"{api_url}\"\nwrite_interval_ms = 0\ntimeout_secs = 5\n{extra}"
    )
}

/// Clears what `labbook` would otherwise take from the caller's environment (`LABBOOK_DB`,
/// `LABBOOK_CONFIG`, `GITHUB_TOKEN`, `GH_TOKEN`, `$EDITOR`) and closes its stdin. The test
/// then sets what it means to give.
pub fn isolate(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("LABBOOK_DB")
        .env_remove("LABBOOK_CONFIG")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .env("EDITOR", "false")
        .stdin(Stdio::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_the_fake_and_keeps_extra_lines_inside() {
        let t = github_table("lab/nb", "http://127.0.0.1:9", "retries = 4\n");
        let after_header: Vec<&str> = t.lines().skip(1).collect();
        assert!(t.starts_with("[github]\n"));
        assert!(after_header.contains(&"api_url = \"http://127.0.0.1:9\""));
        assert!(after_header.contains(&"retries = 4"));
        assert!(after_header.iter().all(|l| !l.starts_with('[')));
    }

    #[test]
    fn an_isolated_command_does_not_inherit_a_token() {
        let mut cmd = Command::new("sh");
        // As if inherited: set on the command before it is isolated.
        cmd.env("GITHUB_TOKEN", "ghp_leak")
            .args(["-c", "printf %s \"${GITHUB_TOKEN-unset}\""]);
        let out = isolate(&mut cmd).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "unset");
    }
}

//! Reading from git: one way to ask the `git` command a question about a directory.
//! (The runner's fetch and checkout are job processes, logged and killable: see
//! `remote::job_process`.)
use std::path::Path;
use std::process::{Command, Stdio};

/// `git ARGS` in `dir` (the current directory when `None`): its standard output when it
/// succeeds, `None` when git is missing or fails. Nothing is read from stdin and git's own
/// messages are dropped, so a question never prompts or prints.
pub fn output(dir: Option<&Path>, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("git");
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// [`output`], trimmed, and `None` when empty.
pub fn line(dir: Option<&Path>, args: &[&str]) -> Option<String> {
    output(dir, args)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_a_repository_and_refuses_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(output(Some(dir.path()), &["rev-parse", "HEAD"]), None);
        assert_eq!(
            line(Some(dir.path()), &["init", "-q"]),
            None,
            "quiet init prints nothing"
        );
        assert_eq!(
            line(Some(dir.path()), &["rev-parse", "--is-inside-work-tree"]).as_deref(),
            Some("true")
        );
    }
}

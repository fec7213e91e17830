//! The GitHub token: from `GITHUB_TOKEN`, `GH_TOKEN` or `gh auth token`. It is held in a
//! type whose `Debug` is redacted and that has no `Display`, so it cannot end up in an
//! error, a log line or the database by accident.
use std::fmt;

use crate::error::{Error, Result};

pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Result<Token> {
        let t = token.into().trim().to_string();
        if t.is_empty() {
            return Err(Error::Github("the GitHub token is empty".into()));
        }
        if t.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::Github(
                "the GitHub token contains spaces or control characters".into(),
            ));
        }
        Ok(Token(t))
    }

    /// `GITHUB_TOKEN`, else `GH_TOKEN`, else `gh auth token` (GitHub CLI), else an error.
    pub fn discover() -> Result<Token> {
        for var in ["GITHUB_TOKEN", "GH_TOKEN"] {
            if let Ok(v) = std::env::var(var)
                && !v.trim().is_empty()
            {
                return Token::new(v);
            }
        }
        let gh = std::process::Command::new("gh")
            .args(["auth", "token"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .filter(|s| !s.trim().is_empty());
        match gh {
            Some(t) => Token::new(t),
            None => Err(Error::Github(
                "no GitHub token: set GITHUB_TOKEN or GH_TOKEN, or log in with `gh auth login`"
                    .into(),
            )),
        }
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let t = Token::new(" ghp_secret123 \n").unwrap();
        assert_eq!(t.expose(), "ghp_secret123");
        assert!(!format!("{t:?}").contains("secret"));
        assert!(Token::new("  ").is_err());
        assert!(Token::new("a b").is_err());
    }
}

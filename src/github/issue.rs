//! GitHub's issue and comment JSON as sync and the runner read it. Everything in them was
//! written by people on GitHub: control characters are dropped as a page is parsed.
use serde::Deserialize;
use serde_json::Value;

use super::client::Client;
use super::merge::Proj;
use super::render::remote_proj;
use crate::error::{Error, Result};
use crate::model::Kind;
use crate::sanitize;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Issue {
    pub number: i64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub state: String,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub assignee: Option<User>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub pull_request: Option<Value>,
    pub updated_at: String,
    #[serde(default)]
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Label {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IssueComment {
    pub id: i64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    pub issue_url: String,
}

impl Issue {
    /// Drops control characters from everything a person on GitHub wrote.
    pub(crate) fn sanitize(&mut self) {
        self.title = sanitize::untrusted_line(&self.title);
        self.body = self.body.as_deref().map(sanitize::untrusted_text);
        for l in &mut self.labels {
            l.name = sanitize::untrusted_line(&l.name);
        }
        for u in self.assignee.iter_mut().chain(self.user.iter_mut()) {
            u.login = sanitize::untrusted_line(&u.login);
        }
    }

    pub(crate) fn author(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.login.as_str())
    }

    pub(crate) fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(|l| l.name.clone()).collect()
    }

    pub(crate) fn proj(&self, kind: Kind) -> Proj {
        remote_proj(
            &self.title,
            self.body.as_deref(),
            self.state == "closed",
            &self.label_names(),
            self.assignee.as_ref().map(|u| u.login.as_str()),
            kind,
        )
    }
}

impl IssueComment {
    pub(crate) fn sanitize(&mut self) {
        self.body = self.body.as_deref().map(sanitize::untrusted_text);
        if let Some(u) = &mut self.user {
            u.login = sanitize::untrusted_line(&u.login);
        }
    }

    pub(crate) fn author(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.login.as_str())
    }
}

/// Parses a page of issues and sanitizes them.
pub(crate) fn parse_issues(body: &str) -> Result<Vec<Issue>> {
    let mut issues: Vec<Issue> = serde_json::from_str(body)
        .map_err(|e| Error::Github(format!("unexpected issue list from GitHub: {e}")))?;
    issues.iter_mut().for_each(Issue::sanitize);
    Ok(issues)
}

pub(crate) fn parse_comments(body: &str) -> Result<Vec<IssueComment>> {
    let mut comments: Vec<IssueComment> = serde_json::from_str(body)
        .map_err(|e| Error::Github(format!("unexpected comment list from GitHub: {e}")))?;
    comments.iter_mut().for_each(IssueComment::sanitize);
    Ok(comments)
}

/// `GET /user`: the login the token acts as. Markers (ours) are trusted only on issues
/// and comments written by this login.
pub(crate) async fn own_login(client: &mut Client) -> Result<String> {
    let me: User = client.get("/user", None).await?.json()?;
    Ok(me.login)
}

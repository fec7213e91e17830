//! A stateful fake of the GitHub REST API subset that sync uses, served over real HTTP on
//! 127.0.0.1 (std `TcpListener`, one thread per connection, `Connection: close`).
//!
//! Used by the tests and by `cargo run --example fake-github` to try sync offline.
//! It implements issues (list with `state`/`since`/`sort`/`direction`/Link pagination,
//! get, create, update), comments (per issue and repo-wide), ETag/304 (304s do not use
//! rate limit), rate-limit headers and switchable faults ([`Faults`]).
//! For remote runs it also knows which commits are pushed (`GET /commits/{sha}`), filters
//! issues by label, edits comments, and accepts extra tokens, each acting as its own user.
//! For trust checks it answers `GET /user`, records who last edited an issue's body and
//! serves it through the GraphQL query labbook sends (and `pinIssue`), and runs on a clock of its own
//! (`clock_offset_secs`: its `Date` header and timestamps), like a server whose time
//! differs from the client's. For the runner's weights it has releases: get by tag or id,
//! create, upload an asset (binary body, on the same host: the tests point the upload URL
//! here), get an asset as JSON or, with `Accept: application/octet-stream`, its bytes, and
//! delete one.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

/// Faults to inject; all off by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability of answering 500 or 502 before doing anything.
    pub error_rate: f64,
    /// Probability of dropping the connection before doing anything.
    pub drop_rate: f64,
    /// Probability (writes only) of applying the write, then dropping the connection.
    pub drop_after_write_rate: f64,
    /// Delay before every answer.
    pub delay: Option<Duration>,
    /// After this many requests, drop every connection (a network cut / a kill).
    pub cut_after: Option<u64>,
    /// Every Nth request gets a 429 with `retry-after: 1` (secondary rate limit).
    pub secondary_every: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct FakeIssue {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub state: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub user: String,
    pub created_at: String,
    pub updated_at: String,
    pub is_pr: bool,
    /// Who last edited the body and when (`None`: never edited), as GraphQL's
    /// `Issue.editor` / `lastEditedAt`.
    pub last_edited: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub user: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct FakeRelease {
    pub id: u64,
    pub tag: String,
    pub name: String,
    pub assets: Vec<FakeAsset>,
}

#[derive(Debug, Clone)]
pub struct FakeAsset {
    pub id: u64,
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub uploader: String,
}

/// Everything the fake knows. Tests may read and change it through [`FakeGithub::state`].
#[derive(Debug)]
pub struct FakeState {
    pub token: String,
    pub repo: String,
    /// Login of the token's user (author of what sync creates).
    pub login: String,
    pub issues: Vec<FakeIssue>,
    pub comments: Vec<FakeComment>,
    pub faults: Faults,
    /// Every request: (method, path with query, status answered; 0 = dropped).
    pub log: Vec<(String, String, u16)>,
    pub rate_limit: u64,
    pub rate_remaining: u64,
    /// Unix second when the primary rate limit refills.
    pub rate_reset: u64,
    /// Creates whose title contains this are refused with 422 (a validation error).
    pub reject_titles_with: Option<String>,
    /// More accepted tokens, each acting as the user it maps to (`token -> login`).
    pub tokens: BTreeMap<String, String>,
    /// Full SHAs of the commits in the repo (`GET /repos/O/R/commits/{sha}` answers 200).
    pub pushed: BTreeSet<String>,
    /// Logins without write access to the repo: their comments carry
    /// `author_association: NONE` (everyone else's: OWNER for the repo's owner, else
    /// COLLABORATOR).
    pub outsiders: BTreeSet<String>,
    /// `(comment id, n)`: the next `n` comment lists leave that comment out, as a GitHub
    /// replica that has not seen a fresh write yet.
    pub stale_lists: Option<(u64, u32)>,
    /// Seconds the fake's clock is ahead of this machine's (negative: behind).
    pub clock_offset_secs: i64,
    /// Releases with their assets (`labbook-runs` holds the runner's weights).
    pub releases: Vec<FakeRelease>,
    /// Issues pinned with GraphQL's `pinIssue`.
    pub pinned: BTreeSet<u64>,
    next_comment_id: u64,
    rng: u64,
}

impl FakeState {
    /// The fake's current time, as GitHub writes timestamps.
    pub fn now(&self) -> String {
        stamp_at(self.clock_offset_secs)
    }

    /// Edits an issue's body as `login` would on GitHub's page.
    pub fn edit_body(&mut self, number: u64, body: &str, login: &str) {
        let now = self.now();
        let i = self.issue_mut(number);
        i.body = Some(body.into());
        i.last_edited = Some((login.into(), now));
    }

    fn rand(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Adds an issue as a GitHub user would. Returns its number.
    pub fn create_issue(&mut self, title: &str, body: &str, labels: &[&str], user: &str) -> u64 {
        let number = self.next_number();
        let now = self.now();
        self.issues.push(FakeIssue {
            number,
            title: title.into(),
            body: Some(body.into()),
            state: "open".into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            assignees: vec![],
            user: user.into(),
            created_at: now.clone(),
            updated_at: now,
            is_pr: false,
            last_edited: None,
        });
        number
    }

    /// Adds a pull request (listed with issues, as on GitHub).
    pub fn create_pr(&mut self, title: &str) -> u64 {
        let n = self.create_issue(title, "a PR", &[], "alice");
        self.issue_mut(n).is_pr = true;
        n
    }

    fn next_number(&self) -> u64 {
        self.issues.iter().map(|i| i.number).max().unwrap_or(0) + 1
    }

    pub fn issue(&self, number: u64) -> &FakeIssue {
        self.issues
            .iter()
            .find(|i| i.number == number)
            .expect("no such fake issue")
    }

    /// Mutable access that also bumps `updated_at`, as any edit on GitHub does.
    pub fn issue_mut(&mut self, number: u64) -> &mut FakeIssue {
        let now = self.now();
        let i = self
            .issues
            .iter_mut()
            .find(|i| i.number == number)
            .expect("no such fake issue");
        i.updated_at = now;
        i
    }

    pub fn add_comment(&mut self, issue: u64, body: &str, user: &str) -> u64 {
        self.next_comment_id += 1;
        let now = self.now();
        self.comments.push(FakeComment {
            id: self.next_comment_id,
            issue,
            body: body.into(),
            user: user.into(),
            created_at: now.clone(),
            updated_at: now,
        });
        self.next_comment_id
    }

    /// Deletes an issue (and its comments), as an admin can on GitHub.
    pub fn delete_issue(&mut self, number: u64) {
        self.issues.retain(|i| i.number != number);
        self.comments.retain(|c| c.issue != number);
    }

    pub fn comments_on(&self, issue: u64) -> Vec<&FakeComment> {
        self.comments.iter().filter(|c| c.issue == issue).collect()
    }

    /// Issues (not PRs) whose body carries `marker`.
    pub fn issues_with(&self, marker: &str) -> Vec<&FakeIssue> {
        self.issues
            .iter()
            .filter(|i| !i.is_pr && i.body.as_deref().is_some_and(|b| b.contains(marker)))
            .collect()
    }

    /// Accepts `token` as user `login` (issues and comments it creates are by `login`).
    pub fn add_token(&mut self, token: &str, login: &str) {
        self.tokens.insert(token.into(), login.into());
    }

    /// GitHub's `author_association` of `login` for this repo.
    pub fn association(&self, login: &str) -> &'static str {
        if self.outsiders.contains(login) {
            "NONE"
        } else if self.repo.split('/').next() == Some(login) {
            "OWNER"
        } else {
            "COLLABORATOR"
        }
    }

    /// Makes commit `sha` (full 40 hex digits) known to the repo, as a push would.
    pub fn push_commit(&mut self, sha: &str) {
        self.pushed.insert(sha.to_ascii_lowercase());
    }

    /// Requests answered (any status) since the log was last cleared.
    pub fn request_count(&self) -> usize {
        self.log.len()
    }
}

/// A running fake server. Dropping it stops accepting connections.
pub struct FakeGithub {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: Arc<AtomicBool>,
}

impl FakeGithub {
    /// Starts on a free port of 127.0.0.1 for repo `owner/name`, accepting `token`.
    pub fn start(repo: &str, token: &str) -> std::io::Result<FakeGithub> {
        Self::start_on("127.0.0.1:0", repo, token)
    }

    pub fn start_on(addr: &str, repo: &str, token: &str) -> std::io::Result<FakeGithub> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(FakeState {
            token: token.into(),
            repo: repo.into(),
            login: "labbook-bot".into(),
            issues: vec![],
            comments: vec![],
            faults: Faults::default(),
            log: vec![],
            rate_limit: 5000,
            rate_remaining: 5000,
            rate_reset: unix_now() + 3600,
            reject_titles_with: None,
            tokens: BTreeMap::new(),
            pushed: BTreeSet::new(),
            outsiders: BTreeSet::new(),
            stale_lists: None,
            clock_offset_secs: 0,
            releases: Vec::new(),
            pinned: BTreeSet::new(),
            next_comment_id: 1000,
            rng: 0x9e37_79b9_7f4a_7c15,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let st = st.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &st);
                    });
                }
            }
        });
        Ok(FakeGithub { addr, state, stop })
    }

    /// `http://127.0.0.1:PORT` — use as `api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn stamp_at(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::seconds(offset_secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    target: String,
    headers: BTreeMap<String, String>,
    body: String,
    /// The body as sent (a release asset's upload is binary).
    bytes: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// A binary body (a release asset) with its content type, sent instead of `body`.
    raw: Option<(Vec<u8>, String)>,
}

fn read_request(conn: &TcpStream) -> std::io::Result<Request> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), pct_decode(v))
        })
        .collect();
    Ok(Request {
        method,
        path: path.to_string(),
        query,
        target: target.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    })
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(mut conn: TcpStream, state: &Mutex<FakeState>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = read_request(&conn)?;
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    // Decide faults first.
    let (delay, fault) = {
        let mut s = lock();
        let n = s.log.len() as u64 + 1;
        let f = s.faults.clone();
        let fault = if f.cut_after.is_some_and(|c| n > c) || s.rand() < f.drop_rate {
            Some(0)
        } else if s.rand() < f.error_rate {
            Some(if s.rand() < 0.5 { 500 } else { 502 })
        } else if f
            .secondary_every
            .is_some_and(|k| k > 0 && n.is_multiple_of(k))
        {
            Some(429)
        } else {
            None
        };
        (f.delay, fault)
    };
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    let resp = match fault {
        Some(0) => {
            lock().log.push((req.method.clone(), req.target.clone(), 0));
            return Ok(()); // dropped: close without an answer
        }
        Some(429) => Response {
            status: 429,
            headers: vec![("retry-after".into(), "1".into())],
            body: json!({"message": "You have exceeded a secondary rate limit."}).to_string(),
            raw: None,
        },
        Some(code) => Response {
            status: code,
            headers: vec![],
            body: json!({"message": "Server Error"}).to_string(),
            raw: None,
        },
        None => {
            let mut s = lock();
            let resp = handle(&mut s, &req);
            let write = req.method != "GET";
            if write && resp.status < 300 && {
                let p = s.faults.drop_after_write_rate;
                s.rand() < p
            } {
                s.log.push((req.method.clone(), req.target.clone(), 0));
                return Ok(()); // applied, but the answer is lost
            }
            resp
        }
    };
    let mut s = lock();
    s.log
        .push((req.method.clone(), req.target.clone(), resp.status));
    let mut headers = resp.headers;
    headers.push((
        "date".into(),
        (chrono::Utc::now() + chrono::TimeDelta::seconds(s.clock_offset_secs))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    ));
    headers.push(("x-ratelimit-limit".into(), s.rate_limit.to_string()));
    headers.push(("x-ratelimit-remaining".into(), s.rate_remaining.to_string()));
    headers.push(("x-ratelimit-reset".into(), s.rate_reset.to_string()));
    drop(s);
    let reason = match resp.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    };
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
    for (k, v) in &headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((bytes, content_type)) = &resp.raw {
        out.push_str(&format!(
            "content-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            bytes.len()
        ));
        conn.write_all(out.as_bytes())?;
        conn.write_all(bytes)?;
        return conn.flush();
    }
    let body = if resp.status == 304 { "" } else { &resp.body };
    out.push_str(&format!(
        "content-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    conn.write_all(out.as_bytes())?;
    conn.flush()
}

fn err(status: u16, message: &str) -> Response {
    Response {
        status,
        headers: vec![],
        body: json!({ "message": message }).to_string(),
        raw: None,
    }
}

fn handle(s: &mut FakeState, req: &Request) -> Response {
    let auth = req.headers.get("authorization").map(String::as_str);
    let presented = auth
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("token "))
        })
        .unwrap_or("");
    let login = if presented == s.token {
        s.login.clone()
    } else if let Some(l) = s.tokens.get(presented) {
        l.clone()
    } else {
        return err(401, "Bad credentials");
    };
    // Primary rate limit (304s are free, as on GitHub).
    let now = unix_now();
    if now >= s.rate_reset {
        s.rate_remaining = s.rate_limit;
        s.rate_reset = now + 3600;
    }
    if s.rate_remaining == 0 {
        return err(403, "API rate limit exceeded for user.");
    }
    let path = req.path.strip_prefix("/api/v3").unwrap_or(&req.path);
    match (req.method.as_str(), path) {
        ("GET", "/user") => {
            s.rate_remaining = s.rate_remaining.saturating_sub(1);
            return ok(200, json!({ "login": login, "id": 1, "type": "User" }));
        }
        ("POST", "/graphql" | "/api/graphql") => {
            s.rate_remaining = s.rate_remaining.saturating_sub(1);
            return graphql(s, req);
        }
        _ => {}
    }
    let prefix = format!("/repos/{}/", s.repo);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return err(404, "Not Found");
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let base = format!(
        "http://{}{}",
        req.headers.get("host").cloned().unwrap_or_default(),
        if req.path.starts_with("/api/v3") {
            "/api/v3"
        } else {
            ""
        }
    );
    let resp = match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["issues"]) => list_issues(s, req, &base),
        ("POST", ["issues"]) => create_issue(s, req, &base, &login),
        ("GET", ["commits", sha]) => {
            let sha = sha.to_ascii_lowercase();
            match s
                .pushed
                .iter()
                .find(|p| sha.len() >= 7 && p.starts_with(&sha))
            {
                Some(full) => ok(
                    200,
                    json!({ "sha": full, "commit": { "message": "pushed" } }),
                ),
                None => err(422, &format!("No commit found for SHA: {sha}")),
            }
        }
        ("PATCH", ["issues", "comments", id]) => {
            match id
                .parse::<u64>()
                .ok()
                .and_then(|id| s.comments.iter().position(|c| c.id == id))
            {
                Some(i) => {
                    let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                    let Some(body) = v["body"].as_str() else {
                        return too_long_or("body", "body is missing");
                    };
                    if body.chars().count() > 65_536 {
                        return too_long("body");
                    }
                    s.comments[i].body = body.to_string();
                    s.comments[i].updated_at = s.now();
                    ok(200, comment_json(s, &s.comments[i], &base))
                }
                None => err(404, "Not Found"),
            }
        }
        ("GET", ["releases", "tags", tag]) => match s.releases.iter().find(|r| r.tag == *tag) {
            Some(r) => ok(200, release_json(r, &base, &s.repo)),
            None => err(404, "Not Found"),
        },
        ("POST", ["releases"]) => create_release(s, req, &base),
        ("GET", ["releases", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match s.releases.iter().find(|r| r.id == id) {
                Some(r) => ok(200, release_json(r, &base, &s.repo)),
                None => err(404, "Not Found"),
            }
        }
        ("POST", ["releases", id, "assets"]) => upload_asset(s, req, id, &base, &login),
        ("GET", ["releases", "assets", id]) => get_asset(s, req, id, &base),
        ("DELETE", ["releases", "assets", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let before: usize = s.releases.iter().map(|r| r.assets.len()).sum();
            for r in &mut s.releases {
                r.assets.retain(|a| a.id != id);
            }
            let after: usize = s.releases.iter().map(|r| r.assets.len()).sum();
            if after < before {
                Response {
                    status: 204,
                    headers: vec![],
                    body: String::new(),
                    raw: None,
                }
            } else {
                err(404, "Not Found")
            }
        }
        ("GET", ["issues", "comments"]) => list_repo_comments(s, req, &base),
        ("GET", ["issues", n]) => match n.parse().ok().and_then(|n| find(s, n)) {
            Some(i) => ok(200, issue_json(&s.issues[i], &base, &s.repo)),
            None => err(404, "Not Found"),
        },
        ("PATCH", ["issues", n]) => match n.parse().ok().and_then(|n| find(s, n)) {
            Some(i) => update_issue(s, i, req, &base, &login),
            None => err(404, "Not Found"),
        },
        ("GET", ["issues", n, "comments"]) => match n.parse::<u64>() {
            Ok(n) if find(s, n).is_some() => {
                let hidden = match &mut s.stale_lists {
                    Some((id, left)) if *left > 0 => {
                        *left -= 1;
                        Some(*id)
                    }
                    _ => None,
                };
                let since = req.query.get("since");
                let all: Vec<Value> = s
                    .comments
                    .iter()
                    .filter(|c| c.issue == n && Some(c.id) != hidden)
                    .filter(|c| since.is_none_or(|t| c.updated_at.as_str() >= t.as_str()))
                    .map(|c| comment_json(s, c, &base))
                    .collect();
                paginate(req, &base, all)
            }
            _ => err(404, "Not Found"),
        },
        ("POST", ["issues", n, "comments"]) => match n.parse::<u64>() {
            Ok(n) if find(s, n).is_some() => {
                let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                let body = v["body"].as_str().unwrap_or("").to_string();
                if body.chars().count() > 65_536 {
                    return too_long("body");
                }
                let id = s.add_comment(n, &body, &login);
                let c = s.comments.iter().find(|c| c.id == id).unwrap();
                ok(201, comment_json(s, c, &base))
            }
            _ => err(404, "Not Found"),
        },
        _ => err(404, "Not Found"),
    };
    if resp.status != 304 {
        s.rate_remaining = s.rate_remaining.saturating_sub(1);
    }
    resp
}

fn too_long(field: &str) -> Response {
    Response {
        status: 422,
        headers: vec![],
        body: json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": field, "code": "custom", "message": format!("{field} is too long (maximum is 65536 characters)")}]}).to_string(),
        raw: None,
    }
}

fn release_json(r: &FakeRelease, base: &str, repo: &str) -> Value {
    json!({
        "id": r.id,
        "node_id": format!("RE_{}", r.id),
        "tag_name": r.tag,
        "target_commitish": "main",
        "name": r.name,
        "body": null,
        "draft": false,
        "prerelease": false,
        "created_at": "2026-01-01T00:00:00Z",
        "published_at": "2026-01-01T00:00:00Z",
        "author": null,
        "tarball_url": null,
        "zipball_url": null,
        "url": format!("{base}/repos/{repo}/releases/{}", r.id),
        "html_url": format!("{base}/{repo}/releases/tag/{}", r.tag),
        "assets_url": format!("{base}/repos/{repo}/releases/{}/assets", r.id),
        "upload_url": format!("{base}/repos/{repo}/releases/{}/assets{{?name,label}}", r.id),
        "assets": r.assets.iter().map(|a| asset_json(a, base, repo)).collect::<Vec<_>>(),
    })
}

/// An asset as GitHub describes it. `uploader` is left out (null): the fake records it in
/// its state, where tests read it.
fn asset_json(a: &FakeAsset, base: &str, repo: &str) -> Value {
    json!({
        "id": a.id,
        "node_id": format!("RA_{}", a.id),
        "name": a.name,
        "label": null,
        "size": a.data.len(),
        "digest": null,
        "download_count": 0,
        "content_type": a.content_type,
        "state": "uploaded",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "url": format!("{base}/repos/{repo}/releases/assets/{}", a.id),
        "browser_download_url": format!("{base}/{repo}/releases/download/labbook-runs/{}", a.name),
        "uploader": null,
    })
}

fn create_release(s: &mut FakeState, req: &Request, base: &str) -> Response {
    let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
    let Some(tag) = v["tag_name"].as_str() else {
        return err(422, "tag_name is required");
    };
    if s.releases.iter().any(|r| r.tag == tag) {
        return err(422, "Validation Failed: tag_name already_exists");
    }
    let id = s.next_comment_id;
    s.next_comment_id += 1;
    let r = FakeRelease {
        id,
        tag: tag.to_string(),
        name: v["name"].as_str().unwrap_or(tag).to_string(),
        assets: Vec::new(),
    };
    let out = release_json(&r, base, &s.repo);
    s.releases.push(r);
    ok(201, out)
}

fn upload_asset(s: &mut FakeState, req: &Request, id: &str, base: &str, login: &str) -> Response {
    let id: u64 = id.parse().unwrap_or(0);
    let Some(name) = req.query.get("name").cloned() else {
        return err(422, "name is required");
    };
    let asset_id = s.next_comment_id;
    let repo = s.repo.clone();
    let Some(r) = s.releases.iter_mut().find(|r| r.id == id) else {
        return err(404, "Not Found");
    };
    if r.assets.iter().any(|a| a.name == name) {
        return err(422, "Validation Failed: name already_exists");
    }
    let a = FakeAsset {
        id: asset_id,
        name,
        content_type: req
            .headers
            .get("content-type")
            .cloned()
            .unwrap_or_else(|| "application/octet-stream".into()),
        data: req.bytes.clone(),
        uploader: login.to_string(),
    };
    let out = asset_json(&a, base, &repo);
    r.assets.push(a);
    s.next_comment_id += 1;
    ok(201, out)
}

/// The asset's JSON, or its bytes with `Accept: application/octet-stream` (GitHub itself
/// redirects to a download host; the client follows either).
fn get_asset(s: &FakeState, req: &Request, id: &str, base: &str) -> Response {
    let id: u64 = id.parse().unwrap_or(0);
    let Some(a) = s
        .releases
        .iter()
        .flat_map(|r| &r.assets)
        .find(|a| a.id == id)
    else {
        return err(404, "Not Found");
    };
    let binary = req
        .headers
        .get("accept")
        .is_some_and(|v| v.contains("application/octet-stream"));
    if binary {
        return Response {
            status: 200,
            headers: vec![],
            body: String::new(),
            raw: Some((a.data.clone(), "application/octet-stream".into())),
        };
    }
    ok(200, asset_json(a, base, &s.repo))
}

fn find(s: &FakeState, n: u64) -> Option<usize> {
    s.issues.iter().position(|i| i.number == n)
}

fn ok(status: u16, v: Value) -> Response {
    Response {
        status,
        headers: vec![],
        body: v.to_string(),
        raw: None,
    }
}

fn issue_json(i: &FakeIssue, base: &str, repo: &str) -> Value {
    let mut v = json!({
        "id": i.number * 10 + 7,
        "node_id": format!("I_{}", i.number),
        "number": i.number,
        "title": i.title,
        "body": i.body,
        "state": i.state,
        "labels": i.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "assignee": i.assignees.first().map(|a| json!({"login": a})),
        "assignees": i.assignees.iter().map(|a| json!({"login": a})).collect::<Vec<_>>(),
        "user": {"login": i.user},
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "url": format!("{base}/repos/{repo}/issues/{}", i.number),
        "html_url": format!("https://github.com/{repo}/issues/{}", i.number),
    });
    if i.is_pr {
        v["pull_request"] = json!({"url": format!("{base}/repos/{repo}/pulls/{}", i.number)});
    }
    v
}

fn comment_json(s: &FakeState, c: &FakeComment, base: &str) -> Value {
    json!({
        "id": c.id,
        "body": c.body,
        "user": {"login": c.user},
        "author_association": s.association(&c.user),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "issue_url": format!("{base}/repos/{}/issues/{}", s.repo, c.issue),
    })
}

/// Pages `all` by `per_page`/`page`, with a Link header and a content ETag.
fn paginate(req: &Request, base: &str, all: Vec<Value>) -> Response {
    let per_page: usize = req
        .query
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = req
        .query
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let last = all.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let body = Value::Array(items).to_string();
    let mut headers = Vec::new();
    let path = req.path.clone();
    let link_for = |p: usize| {
        let mut q: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        q.push(format!("page={p}"));
        format!(
            "<{base}{}?{}>",
            path.strip_prefix("/api/v3").unwrap_or(&path),
            q.join("&")
        )
    };
    if page < last {
        headers.push((
            "link".into(),
            format!(
                "{}; rel=\"next\", {}; rel=\"last\"",
                link_for(page + 1),
                link_for(last)
            ),
        ));
    }
    let etag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        headers.hash(&mut h);
        format!("W/\"{:016x}\"", h.finish())
    };
    if req.headers.get("if-none-match") == Some(&etag) {
        return Response {
            status: 304,
            headers: vec![("etag".into(), etag)],
            body: String::new(),
            raw: None,
        };
    }
    headers.push(("etag".into(), etag));
    Response {
        status: 200,
        headers,
        body,
        raw: None,
    }
}

fn sort_filter<T>(
    req: &Request,
    mut v: Vec<T>,
    created: impl Fn(&T) -> (&str, u64),
    updated: impl Fn(&T) -> (&str, u64),
) -> Vec<T> {
    if let Some(since) = req.query.get("since") {
        v.retain(|x| updated(x).0 >= since.as_str());
    }
    let by_updated = req.query.get("sort").map(String::as_str) == Some("updated");
    let key = |x: &T| {
        if by_updated {
            let (t, n) = updated(x);
            (t.to_string(), n)
        } else {
            let (t, n) = created(x);
            (t.to_string(), n)
        }
    };
    v.sort_by_key(key);
    if req.query.get("direction").map(String::as_str) != Some("asc") {
        v.reverse();
    }
    v
}

fn list_issues(s: &FakeState, req: &Request, base: &str) -> Response {
    let state = req.query.get("state").map(String::as_str).unwrap_or("open");
    let wanted: Vec<&str> = req
        .query
        .get("labels")
        .map(|l| l.split(',').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let issues: Vec<&FakeIssue> = s
        .issues
        .iter()
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| wanted.iter().all(|w| i.labels.iter().any(|l| l == w)))
        .collect();
    let issues = sort_filter(
        req,
        issues,
        |i| (i.created_at.as_str(), i.number),
        |i| (i.updated_at.as_str(), i.number),
    );
    let all = issues
        .into_iter()
        .map(|i| issue_json(i, base, &s.repo))
        .collect();
    paginate(req, base, all)
}

fn list_repo_comments(s: &FakeState, req: &Request, base: &str) -> Response {
    let comments: Vec<&FakeComment> = s.comments.iter().collect();
    let comments = sort_filter(
        req,
        comments,
        |c| (c.created_at.as_str(), c.id),
        |c| (c.updated_at.as_str(), c.id),
    );
    let all = comments
        .into_iter()
        .map(|c| comment_json(s, c, base))
        .collect();
    paginate(req, base, all)
}

fn str_list(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| {
                x.as_str()
                    .or_else(|| x["name"].as_str())
                    .map(str::to_string)
            })
            .collect()
    })
}

fn create_issue(s: &mut FakeState, req: &Request, base: &str, login: &str) -> Response {
    let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
    let Some(title) = v["title"].as_str().filter(|t| !t.trim().is_empty()) else {
        return too_long_or("title", "title is missing");
    };
    let body = v["body"].as_str().unwrap_or("");
    if body.chars().count() > 65_536 {
        return too_long("body");
    }
    if s.reject_titles_with
        .as_deref()
        .is_some_and(|r| title.contains(r))
    {
        return too_long_or("title", "title is not allowed here");
    }
    let n = s.create_issue(title, body, &[], login);
    let i = find(s, n).unwrap();
    if let Some(l) = str_list(&v["labels"]) {
        s.issues[i].labels = l;
    }
    if let Some(a) = str_list(&v["assignees"]) {
        s.issues[i].assignees = a;
    }
    ok(201, issue_json(&s.issues[i], base, &s.repo))
}

fn too_long_or(field: &str, msg: &str) -> Response {
    Response {
        status: 422,
        headers: vec![],
        body: json!({"message": "Validation Failed", "errors": [{"field": field, "code": "missing_field", "message": msg}]}).to_string(),
        raw: None,
    }
}

/// The one GraphQL query labbook sends: an issue's author and last body edit.
fn graphql(s: &mut FakeState, req: &Request) -> Response {
    let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
    let query = v["query"].as_str().unwrap_or("");
    if query.contains("pinIssue") {
        let n = v["variables"]["id"]
            .as_str()
            .and_then(|id| id.strip_prefix("I_"))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| find(s, *n).is_some());
        return match n {
            Some(n) => {
                s.pinned.insert(n);
                ok(200, json!({"data": {"pinIssue": {"issue": {"number": n}}}}))
            }
            None => ok(
                200,
                json!({"data": null, "errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a node"}]}),
            ),
        };
    }
    if !query.contains("lastEditedAt") {
        return ok(
            200,
            json!({"errors": [{"message": "the fake GitHub serves one query only"}]}),
        );
    }
    let vars = &v["variables"];
    let (owner, name) = s.repo.split_once('/').unwrap_or(("", ""));
    if vars["owner"] != owner || vars["name"] != name {
        return ok(
            200,
            json!({"data": {"repository": null}, "errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a Repository"}]}),
        );
    }
    let issue = vars["number"]
        .as_u64()
        .and_then(|n| find(s, n))
        .map(|i| &s.issues[i]);
    let node = issue.map(|i| {
        json!({
            "author": {"login": i.user},
            "lastEditedAt": i.last_edited.as_ref().map(|e| e.1.clone()),
            "editor": i.last_edited.as_ref().map(|e| json!({"login": e.0})),
        })
    });
    ok(200, json!({"data": {"repository": {"issue": node}}}))
}

fn update_issue(s: &mut FakeState, i: usize, req: &Request, base: &str, login: &str) -> Response {
    let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
    if let Some(b) = v["body"].as_str()
        && b.chars().count() > 65_536
    {
        return too_long("body");
    }
    let number = s.issues[i].number;
    let issue = s.issue_mut(number);
    if let Some(t) = v["title"].as_str() {
        issue.title = t.into();
    }
    if let Some(b) = v["body"].as_str()
        && issue.body.as_deref() != Some(b)
    {
        issue.body = Some(b.into());
        issue.last_edited = Some((login.into(), issue.updated_at.clone()));
    }
    if let Some(st) = v["state"].as_str() {
        issue.state = st.into();
    }
    if let Some(l) = str_list(&v["labels"]) {
        issue.labels = l;
    }
    if let Some(a) = str_list(&v["assignees"]) {
        issue.assignees = a;
    }
    ok(200, issue_json(&s.issues[i], base, &s.repo))
}

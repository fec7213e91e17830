//! HTTP to the GitHub REST API through octocrab's hyper client (no retry layer): our own
//! retries (reads and idempotent PATCHes only), rate-limit handling (primary and
//! secondary limits, `retry-after`), write pacing and conditional GETs.
//!
//! POSTs are never retried here: a POST whose outcome is unknown (dropped connection,
//! 5xx, timeout) comes back as [`Sent::Unknown`] and the caller looks for its marker on
//! GitHub before trying again, so a retry can never create a duplicate.
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use octocrab::Octocrab;
use serde_json::Value;

use super::token::Token;
use crate::config::GithubConfig;
use crate::error::{Error, Result};

mod assets;
pub use assets::AssetRef;

/// One HTTP response, body read in full.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `rel="next"` URL of a `Link` header.
    pub fn next_link(&self) -> Option<String> {
        next_link(self.header("link")?)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.body)
            .map_err(|e| Error::Github(format!("unexpected response from GitHub: {e}")))
    }
}

/// Parses `<url>; rel="next", <url>; rel="last"`.
pub fn next_link(link: &str) -> Option<String> {
    link_rel(link, "next")
}

/// The URL of relation `rel` in a `Link` header.
pub fn link_rel(link: &str, rel: &str) -> Option<String> {
    let want = format!("rel=\"{rel}\"");
    link.split(',').find_map(|part| {
        let (url, rest) = part.trim().split_once(';')?;
        rest.contains(&want).then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// A paginated listing read page by page, for callers that stop early or act on each
/// page as it comes ([`Client::get_all`] reads them all).
pub struct Pages {
    next: Option<String>,
}

impl Pages {
    pub fn new(first: &str) -> Pages {
        Pages {
            next: Some(first.to_string()),
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next(&mut self, client: &mut Client) -> Result<Option<Resp>> {
        let Some(path) = self.next.take() else {
            return Ok(None);
        };
        let resp = client.get(&path, None).await?;
        self.next = client.next_page(&resp);
        Ok(Some(resp))
    }
}

/// Outcome of a POST.
pub enum Sent {
    Done(Resp),
    /// The request may or may not have been applied.
    Unknown(String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verb {
    Get,
    Post,
    Patch,
    /// A GraphQL query: sent as a POST, but a read, so retried like a GET.
    Query,
}

pub struct Client {
    octo: Octocrab,
    /// The same API without a default `Accept`, for release-asset bytes.
    bytes_octo: Octocrab,
    /// GitHub Enterprise serves GraphQL at `/api/graphql`, beside (not under) `/api/v3`.
    graphql_octo: Option<Octocrab>,
    api_url: String,
    write_interval: Duration,
    last_write: Option<Instant>,
    retries: u32,
    max_wait: Duration,
    backoff: Duration,
    /// Requests sent (including 304s and failures), for reports and tests.
    pub requests: u64,
    /// Primary rate limit as last reported.
    pub rate_remaining: Option<u64>,
    rate_reset: Option<u64>,
    /// Fail instead of sending request number `max + 1` (a kill switch for tests).
    request_limit: Option<u64>,
}

impl Client {
    /// Must be called inside a tokio runtime (octocrab spawns its buffer task).
    pub fn new(cfg: &GithubConfig, token: &Token) -> Result<Client> {
        let api_url = cfg.api_url.trim_end_matches('/').to_string();
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let octo = build_octo(&api_url, token, timeout)?;
        let bytes_octo = build_octo_accepting(&api_url, token, timeout, None)?;
        let graphql_octo = api_url
            .strip_suffix("/v3")
            .filter(|base| base.ends_with("/api"))
            .map(|base| build_octo(base, token, timeout))
            .transpose()?;
        Ok(Client {
            octo,
            bytes_octo,
            graphql_octo,
            api_url,
            write_interval: Duration::from_millis(cfg.write_interval_ms),
            last_write: None,
            retries: cfg.retries,
            max_wait: Duration::from_secs(cfg.max_wait_secs),
            backoff: Duration::from_millis(200),
            requests: 0,
            rate_remaining: None,
            rate_reset: None,
            request_limit: None,
        })
    }

    /// A GraphQL query (a read, retried like a GET). Returns its `data`; an answer with
    /// `errors` is an error naming the first.
    pub async fn graphql(&mut self, query: &str, variables: Value) -> Result<Value> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let resp = match self
            .request(Verb::Query, "/graphql", HeaderMap::new(), Some(&body), &[])
            .await?
        {
            Sent::Done(r) => r,
            Sent::Unknown(why) => return Err(Error::Github(why)),
        };
        let v: Value = resp.json()?;
        if let Some(e) = v["errors"].as_array().and_then(|e| e.first()) {
            return Err(Error::Github(format!(
                "GitHub's GraphQL API answered: {}",
                crate::sanitize::untrusted_line(e["message"].as_str().unwrap_or("an error"))
            )));
        }
        Ok(v["data"].clone())
    }
}

fn build_octo(api_url: &str, token: &Token, timeout: Duration) -> Result<Octocrab> {
    build_octo_accepting(api_url, token, timeout, Some("application/vnd.github+json"))
}

/// An octocrab client whose requests carry `accept` unless they set their own (`None`: the
/// client for release-asset bytes, whose `Accept: application/octet-stream` must be the only
/// one).
fn build_octo_accepting(
    api_url: &str,
    token: &Token,
    timeout: Duration,
    accept: Option<&str>,
) -> Result<Octocrab> {
    let upload = assets::upload_base(api_url);
    let mut builder = Octocrab::builder()
        .base_uri(api_url)
        .map_err(|_| Error::Github(format!("`{api_url}` is not a valid api_url")))?
        .upload_uri(upload.as_str())
        .map_err(|_| Error::Github(format!("`{upload}` is not a valid upload URL")))?
        .personal_token(token.expose().to_string())
        .set_connect_timeout(Some(timeout))
        .set_read_timeout(Some(timeout))
        .set_write_timeout(Some(timeout))
        .add_header(
            http::HeaderName::from_static("x-github-api-version"),
            "2022-11-28".to_string(),
        );
    if let Some(accept) = accept {
        builder = builder.add_header(http::header::ACCEPT, accept.to_string());
    }
    builder
        .build()
        .map_err(|e| Error::Github(format!("cannot set up the HTTP client: {e}")))
}

impl Client {
    /// Shorter retry backoff (tests).
    pub fn set_backoff(&mut self, d: Duration) {
        self.backoff = d;
    }

    /// After `max` requests every further one fails, as if the process had been killed
    /// there (tests of interrupted syncs).
    pub fn set_request_limit(&mut self, max: Option<u64>) {
        self.request_limit = max;
    }

    /// The path of the page after `resp` in a paginated listing (its `Link: rel="next"`).
    pub fn next_page(&self, resp: &Resp) -> Option<String> {
        resp.next_link().map(|l| self.relative(&l))
    }

    /// Every page of a listing, each parsed by `parse` (which sanitises what it reads).
    pub async fn get_all<T>(
        &mut self,
        first: &str,
        parse: impl Fn(&str) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut pages = Pages::new(first);
        let mut all = Vec::new();
        while let Some(resp) = pages.next(self).await? {
            all.extend(parse(&resp.body)?);
        }
        Ok(all)
    }

    /// A path relative to the API root for a URL GitHub handed back (e.g. a `Link`).
    pub fn relative(&self, url: &str) -> String {
        url.strip_prefix(&self.api_url)
            .map(str::to_string)
            .unwrap_or_else(|| url.to_string())
    }

    /// GET with an optional `If-None-Match`; 304 comes back as status 304.
    pub async fn get(&mut self, path: &str, etag: Option<&str>) -> Result<Resp> {
        let mut headers = HeaderMap::new();
        if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert(http::header::IF_NONE_MATCH, tag);
        }
        match self.request(Verb::Get, path, headers, None, &[]).await? {
            Sent::Done(r) => Ok(r),
            Sent::Unknown(why) => Err(Error::Github(why)),
        }
    }

    /// GET where "not there" is an answer, not an error: 404 and 422 (GitHub's answer for
    /// an unknown commit) come back as `None`.
    pub async fn get_if_exists(&mut self, path: &str) -> Result<Option<Resp>> {
        match self
            .request(Verb::Get, path, HeaderMap::new(), None, &[404, 422])
            .await?
        {
            Sent::Done(r) if r.status == 404 || r.status == 422 => Ok(None),
            Sent::Done(r) => Ok(Some(r)),
            Sent::Unknown(why) => Err(Error::Github(why)),
        }
    }

    /// PATCH is idempotent (it sets fields), so it is retried like a read.
    pub async fn patch(&mut self, path: &str, body: &Value) -> Result<Resp> {
        match self
            .request(Verb::Patch, path, HeaderMap::new(), Some(body), &[])
            .await?
        {
            Sent::Done(r) => Ok(r),
            Sent::Unknown(why) => Err(Error::Github(why)),
        }
    }

    /// POST once. Rate-limit refusals (not applied by GitHub) are waited out and resent;
    /// anything else uncertain is returned as [`Sent::Unknown`].
    pub async fn post(&mut self, path: &str, body: &Value) -> Result<Sent> {
        self.request(Verb::Post, path, HeaderMap::new(), Some(body), &[])
            .await
    }

    async fn request(
        &mut self,
        verb: Verb,
        path: &str,
        headers: HeaderMap,
        body: Option<&Value>,
        answers: &[u16],
    ) -> Result<Sent> {
        let mut attempt = 0u32;
        loop {
            if let Some(max) = self.request_limit
                && self.requests >= max
            {
                return Err(Error::Github(format!(
                    "stopped after {max} requests (test kill switch)"
                )));
            }
            self.wait_for_rate_limit().await?;
            if matches!(verb, Verb::Post | Verb::Patch) {
                if let Some(last) = self.last_write {
                    let next = last + self.write_interval;
                    let now = Instant::now();
                    if next > now {
                        tokio::time::sleep(next - now).await;
                    }
                }
                self.last_write = Some(Instant::now());
            }
            self.requests += 1;
            tracing::debug!(?verb, path, attempt, "github request");
            let outcome = self.send_once(verb, path, &headers, body).await;
            let resp = match outcome {
                Ok(r) => r,
                Err(why) => {
                    // Transport failure: timeout, refused or dropped connection.
                    if verb == Verb::Post {
                        return Ok(Sent::Unknown(why));
                    }
                    if attempt >= self.retries {
                        return Err(Error::Github(format!(
                            "cannot reach {}: {why}",
                            self.api_url
                        )));
                    }
                    attempt += 1;
                    self.sleep_backoff(attempt).await;
                    continue;
                }
            };
            self.note_rate_limit(&resp);
            let status = resp.status;
            if status < 300 || status == 304 || answers.contains(&status) {
                return Ok(Sent::Done(resp));
            }
            if let Some(wait) = self.rate_limit_wait(&resp) {
                // Refused before being applied: safe to resend, POSTs included.
                if wait > self.max_wait {
                    return Err(Error::Github(format!(
                        "rate limited for another {}s (longer than max_wait_secs); run sync again later — it resumes where it stopped",
                        wait.as_secs()
                    )));
                }
                if attempt >= self.retries + 3 {
                    return Err(Error::Github(
                        "still rate limited after several waits; run sync again later".into(),
                    ));
                }
                attempt += 1;
                tracing::info!(secs = wait.as_secs_f64(), "github rate limit: waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status >= 500 {
                let why = format!("GitHub answered {status} to {path}");
                if verb == Verb::Post {
                    return Ok(Sent::Unknown(why));
                }
                if attempt >= self.retries {
                    return Err(Error::Github(why));
                }
                attempt += 1;
                self.sleep_backoff(attempt).await;
                continue;
            }
            return Err(self.http_error(&resp, path));
        }
    }

    async fn send_once(
        &self,
        verb: Verb,
        path: &str,
        headers: &HeaderMap,
        body: Option<&Value>,
    ) -> std::result::Result<Resp, String> {
        let res = match verb {
            Verb::Get => {
                self.octo
                    ._get_with_headers(path, Some(headers.clone()))
                    .await
            }
            Verb::Post => self.octo._post(path, body).await,
            Verb::Query => {
                self.graphql_octo
                    .as_ref()
                    .unwrap_or(&self.octo)
                    ._post(path, body)
                    .await
            }
            Verb::Patch => self.octo._patch(path, body).await,
        }
        .map_err(|e| error_chain(&e))?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = self
            .octo
            .body_to_string(res)
            .await
            .map_err(|e| error_chain(&e))?;
        Ok(Resp {
            status: status.as_u16(),
            headers,
            body,
        })
    }

    async fn sleep_backoff(&self, attempt: u32) {
        let d = self.backoff * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
        tokio::time::sleep(d.min(Duration::from_secs(10))).await;
    }

    fn note_rate_limit(&mut self, resp: &Resp) {
        if let Some(r) = resp
            .header("x-ratelimit-remaining")
            .and_then(|v| v.parse().ok())
        {
            self.rate_remaining = Some(r);
        }
        if let Some(r) = resp
            .header("x-ratelimit-reset")
            .and_then(|v| v.parse().ok())
        {
            self.rate_reset = Some(r);
        }
    }

    /// Before sending: if the primary limit is spent, wait for its reset.
    async fn wait_for_rate_limit(&mut self) -> Result<()> {
        if self.rate_remaining == Some(0)
            && let Some(reset) = self.rate_reset
        {
            let wait = until_epoch(reset);
            if wait > self.max_wait {
                return Err(Error::Github(format!(
                    "API rate limit used up until {reset} (unix time); run sync again later — it resumes where it stopped"
                )));
            }
            tokio::time::sleep(wait).await;
            self.rate_remaining = None;
        }
        Ok(())
    }

    /// How long to wait when `resp` is a rate-limit refusal (403/429), else None.
    fn rate_limit_wait(&self, resp: &Resp) -> Option<Duration> {
        if resp.status != 403 && resp.status != 429 {
            return None;
        }
        if let Some(secs) = resp
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_secs(secs));
        }
        if resp.header("x-ratelimit-remaining") == Some("0")
            && let Some(reset) = resp
                .header("x-ratelimit-reset")
                .and_then(|v| v.parse().ok())
        {
            return Some(until_epoch(reset));
        }
        let msg = resp.body.to_ascii_lowercase();
        if resp.status == 429 || msg.contains("rate limit") {
            // Secondary limit without a hint: GitHub asks for at least a minute.
            return Some(Duration::from_secs(60));
        }
        None
    }

    fn http_error(&self, resp: &Resp, path: &str) -> Error {
        let message = serde_json::from_str::<Value>(&resp.body)
            .ok()
            .and_then(|v| {
                let mut m = v.get("message")?.as_str()?.to_string();
                if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
                    let detail: Vec<String> = errs
                        .iter()
                        .filter_map(|e| e.get("message").and_then(|m| m.as_str()))
                        .map(str::to_string)
                        .collect();
                    if !detail.is_empty() {
                        m = format!("{m} ({})", detail.join("; "));
                    }
                }
                Some(m)
            })
            .unwrap_or_else(|| {
                StatusCode::from_u16(resp.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error")
                    .to_string()
            });
        let msg = match resp.status {
            401 => format!(
                "GitHub rejected the token (401 {message}); check GITHUB_TOKEN / GH_TOKEN / `gh auth token`"
            ),
            403 => format!(
                "GitHub refused access (403 {message}); the token needs the `repo` scope (or Issues: read and write)"
            ),
            404 => format!(
                "not found on GitHub (404 {path}); check [github] repo and that the token can see it"
            ),
            s => format!("GitHub answered {s} to {path}: {message}"),
        };
        Error::Github(msg)
    }
}

/// The single-threaded runtime every GitHub operation runs on (octocrab needs one).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Github(format!("cannot start the async runtime: {e}")))
}

fn until_epoch(reset: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // +1s: the reset second itself may still be limited.
    Duration::from_secs(reset + 1).saturating_sub(now)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_for_https_and_enterprise_urls() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let token = Token::new("t0ken").unwrap();
            for url in ["https://api.github.com", "https://ghe.example.com/api/v3/"] {
                let c = Client::new(&GithubConfig::new("a/b", url), &token).unwrap();
                assert_eq!(
                    c.relative(&format!(
                        "{}/repos/a/b/issues?page=2",
                        url.trim_end_matches('/')
                    )),
                    "/repos/a/b/issues?page=2"
                );
            }
        });
    }

    #[test]
    fn link_header_next() {
        let h = r#"<http://x/repos/a/b/issues?page=2>; rel="next", <http://x/repos/a/b/issues?page=5>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("http://x/repos/a/b/issues?page=2")
        );
        assert_eq!(next_link(r#"<http://x?page=1>; rel="prev""#), None);
    }
}

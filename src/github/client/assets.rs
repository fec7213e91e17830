//! Release assets: the runner uploads each request's weights and curves to the
//! `labbook-runs` release, `pull-model` downloads them. Uploads go through octocrab's
//! release-asset upload (to the upload host, see [`upload_base`]); downloads ask the API for
//! the asset's bytes and follow GitHub's redirect to its download host without the token
//! (octocrab sends it to GitHub's own hosts only).
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{Client, Sent, error_chain};
use crate::error::{Error, Result};

/// Where release assets are uploaded for an API at `api_url`: GitHub's own upload host,
/// GitHub Enterprise's `/api/uploads`, or the API's host itself (a local fake).
pub(super) fn upload_base(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if api == "https://api.github.com" {
        "https://uploads.github.com".into()
    } else if let Some(host) = api.strip_suffix("/api/v3") {
        format!("{host}/api/uploads")
    } else {
        api.into()
    }
}

/// An uploaded asset, as the results comment records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AssetRef {
    /// The release's tag.
    pub release: String,
    pub id: u64,
    pub name: String,
    pub size: u64,
    /// Where a browser downloads it.
    pub url: String,
}

impl Client {
    /// The release tagged `tag`, created (published, on the default branch) when missing.
    /// Returns its id and its assets' `(name, id)`.
    pub async fn ensure_release(
        &mut self,
        repo: &str,
        tag: &str,
        description: &str,
    ) -> Result<(u64, Vec<(String, u64)>)> {
        let read = |v: &Value| -> Result<(u64, Vec<(String, u64)>)> {
            let id = v["id"]
                .as_u64()
                .ok_or_else(|| Error::Github("a release without an id".into()))?;
            let assets = v["assets"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|a| Some((a["name"].as_str()?.to_string(), a["id"].as_u64()?)))
                        .collect()
                })
                .unwrap_or_default();
            Ok((id, assets))
        };
        let path = format!("/repos/{repo}/releases/tags/{tag}");
        if let Some(found) = self.get_if_exists(&path).await? {
            return read(&found.json()?);
        }
        let body = json!({ "tag_name": tag, "name": tag, "body": description });
        match self.post(&format!("/repos/{repo}/releases"), &body).await? {
            Sent::Done(r) => read(&r.json()?),
            // Maybe created: it is found by its tag.
            Sent::Unknown(why) => match self.get_if_exists(&path).await? {
                Some(found) => read(&found.json()?),
                None => Err(Error::Github(format!(
                    "could not create the {tag} release: {why}"
                ))),
            },
        }
    }

    /// Deletes a release asset (a leftover of an earlier attempt with the same name).
    pub async fn delete_asset(&mut self, repo: &str, id: u64) -> Result<()> {
        self.requests += 1;
        let res = self
            .octo
            ._delete(format!("/repos/{repo}/releases/assets/{id}"), None::<&()>)
            .await
            .map_err(|e| Error::Github(error_chain(&e)))?;
        match res.status().as_u16() {
            204 | 404 => Ok(()),
            s => Err(Error::Github(format!(
                "GitHub answered {s} to deleting release asset {id}"
            ))),
        }
    }

    /// Uploads `data` as asset `name` of release `release_id` (of `repo`, tagged `tag`).
    pub async fn upload_asset(
        &mut self,
        repo: &str,
        (release_id, tag): (u64, &str),
        name: &str,
        data: Vec<u8>,
    ) -> Result<AssetRef> {
        let (owner, repo_name) = repo
            .split_once('/')
            .ok_or_else(|| Error::Invalid(format!("`{repo}` is not owner/name")))?;
        self.requests += 2; // octocrab reads the release, then posts the bytes
        let asset = self
            .octo
            .repos(owner, repo_name)
            .releases()
            .upload_asset(release_id, name, Bytes::from(data))
            .send()
            .await
            .map_err(|e| Error::Github(format!("cannot upload {name}: {}", error_chain(&e))))?;
        Ok(AssetRef {
            release: tag.to_string(),
            id: asset.id.into_inner(),
            name: asset.name,
            size: asset.size.max(0) as u64,
            url: asset.browser_download_url.to_string(),
        })
    }

    /// The bytes of release asset `id` of `repo`, at most `max` of them.
    pub async fn download_asset(&mut self, repo: &str, id: u64, max: u64) -> Result<Vec<u8>> {
        let path = format!("/repos/{repo}/releases/assets/{id}");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/octet-stream"),
        );
        self.requests += 1;
        let fail = |e: &dyn std::error::Error| Error::Github(format!("{path}: {}", error_chain(e)));
        let mut res = self
            .bytes_octo
            ._get_with_headers(path.as_str(), Some(headers))
            .await
            .map_err(|e| fail(&e))?;
        if res.status().is_redirection() {
            self.requests += 1;
            res = self
                .bytes_octo
                .follow_location_to_data(res)
                .await
                .map_err(|e| fail(&e))?;
        }
        let status = res.status().as_u16();
        if status != 200 {
            return Err(Error::Github(format!(
                "GitHub answered {status} to downloading release asset {id} of {repo}"
            )));
        }
        let declared = res
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(Error::Github(format!(
                "release asset {id} is larger than {max} bytes; not downloaded"
            )));
        }
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(&e))?
            .to_bytes();
        if bytes.len() as u64 > max {
            return Err(Error::Github(format!(
                "release asset {id} is larger than {max} bytes"
            )));
        }
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::upload_base;

    #[test]
    fn uploads_go_to_the_upload_host() {
        assert_eq!(
            upload_base("https://api.github.com/"),
            "https://uploads.github.com"
        );
        assert_eq!(
            upload_base("https://ghe.example.com/api/v3"),
            "https://ghe.example.com/api/uploads"
        );
        assert_eq!(
            upload_base("http://127.0.0.1:4000"),
            "http://127.0.0.1:4000"
        );
    }
}

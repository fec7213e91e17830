//! Pushing: creating issues for unsynced items (intent committed before the POST, a marker
//! lookup before any retry), PATCHing local changes and posting comments the same way.
use super::*;

impl Syncer<'_> {
    pub(super) async fn create_issues(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let todo: Vec<(ItemId, Option<String>)> = {
            let mut all = gh_store::unlinked_items(self.store.conn(), &repo)?;
            all.retain(|(id, _)| self.cfg.kinds.contains(&id.kind));
            all
        };
        for (id, pending) in todo {
            if let Some(started) = pending {
                let mut found = self.find_issue_by_marker(id, &started).await?;
                // A killed sync's POST can still land after it died: GitHub finishes a
                // request it has received. Look again once that request would have timed out.
                if found.is_none() && self.wait_until_settled(&started).await {
                    found = self.find_issue_by_marker(id, &started).await?;
                }
                if let Some(issue) = found {
                    self.adopt(id, &issue)?;
                    continue;
                }
            }
            match self.create_one(id).await {
                Err(e) if is_rejection(&e) => {
                    self.skip(id, e)?;
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Records an item GitHub refused and forgets its unconfirmed create (nothing was
    /// created: a 422 is a definite answer).
    pub(super) fn skip(&mut self, id: ItemId, e: Error) -> Result<()> {
        let msg = format!("{id}: {e}");
        tracing::warn!(%msg, "github refused an item");
        self.store.write(|tx, _| {
            let rowid = crate::store::items::rowid_of(tx, id)?;
            gh_store::end_create(tx, rowid)
        })?;
        self.report.events.push(format!("skipped {msg}"));
        self.report.skipped.push(msg);
        Ok(())
    }

    pub(super) fn adopt(&mut self, id: ItemId, issue: &Issue) -> Result<()> {
        let repo = self.repo().to_string();
        self.store.write(|tx, ctx| {
            let item = get_item(tx, id)?;
            let remote = issue.proj(item.kind);
            let stored = Stored {
                snap: Snapshot {
                    local: remote.clone(),
                    remote,
                },
                label_names: issue.label_names(),
            };
            save_link(tx, ctx, &repo, item.rowid, issue.number, &stored)?;
            gh_store::end_create(tx, item.rowid)
        })?;
        self.report.adopted += 1;
        self.report.events.push(format!(
            "adopted #{} for {id} (found by marker)",
            issue.number
        ));
        Ok(())
    }

    pub(super) fn rendered(&self, id: ItemId) -> Result<(Item, String)> {
        let item = self.store.get(id)?;
        let links = self.store.links_of(id)?;
        let footer = render::footer(&item, &links);
        Ok((item, footer))
    }

    pub(super) async fn create_one(&mut self, id: ItemId) -> Result<()> {
        let repo = self.repo().to_string();
        let (item, footer) = self.rendered(id)?;
        let local = local_proj(&item, &footer);
        let mut payload = json!({
            "title": item.title,
            "body": issue_body(&item, &footer),
            "labels": local.labels.iter().collect::<Vec<_>>(),
        });
        if let Some(a) = &local.assignee {
            payload["assignees"] = json!([a]);
        }
        let started = crate::store::now();
        self.store
            .write(|tx, _| gh_store::begin_create(tx, item.rowid, &repo, &started))?;
        let path = format!("/repos/{repo}/issues");
        let mut attempt = 0;
        loop {
            match self.client.post(&path, &payload).await? {
                Sent::Done(resp) => {
                    let issue: Issue = resp.json()?;
                    let mut snap_local = local.clone();
                    // A new issue is open; if the item is closed the state is pushed next.
                    snap_local.closed = false;
                    let stored = Stored {
                        snap: Snapshot {
                            local: snap_local,
                            remote: issue.proj(item.kind),
                        },
                        label_names: issue.label_names(),
                    };
                    self.store.write(|tx, ctx| {
                        save_link(tx, ctx, &repo, item.rowid, issue.number, &stored)?;
                        gh_store::end_create(tx, item.rowid)
                    })?;
                    self.report.created += 1;
                    self.report
                        .events
                        .push(format!("created #{} for {id}", issue.number));
                    return Ok(());
                }
                Sent::Unknown(why) => {
                    tracing::warn!(%id, %why, "issue create uncertain; looking for its marker");
                    if let Some(issue) = self.find_issue_by_marker(id, &started).await? {
                        return self.adopt(id, &issue);
                    }
                    attempt += 1;
                    if attempt > self.cfg.retries {
                        return Err(Error::Github(format!(
                            "could not create the issue for {id}: {why}; run sync again (it will not duplicate)"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
                }
            }
        }
    }

    /// Sleeps until a create POSTed at `started` can no longer be in flight (the client's
    /// timeout plus a second); `false` when that time has already passed.
    pub(super) async fn wait_until_settled(&self, started: &str) -> bool {
        let Ok(started) = chrono::DateTime::parse_from_rfc3339(started) else {
            return false;
        };
        let settled = started.with_timezone(&chrono::Utc)
            + chrono::Duration::seconds(self.cfg.timeout_secs.max(1) as i64 + 1);
        match (settled - chrono::Utc::now()).to_std() {
            Ok(wait) if !wait.is_zero() => {
                tracing::info!(?wait, "waiting for an unconfirmed create to settle");
                tokio::time::sleep(wait).await;
                true
            }
            _ => false,
        }
    }

    /// Looks through issues created since shortly before `started` for `id`'s marker.
    pub(super) async fn find_issue_by_marker(
        &mut self,
        id: ItemId,
        started: &str,
    ) -> Result<Option<Issue>> {
        let repo = self.repo().to_string();
        let cutoff = chrono::DateTime::parse_from_rfc3339(started)
            .map(|t| t.with_timezone(&chrono::Utc) - chrono::Duration::hours(1))
            .ok();
        let mut listing = Pages::new(&format!(
            "/repos/{repo}/issues?state=all&sort=created&direction=desc&per_page=100"
        ));
        let me = self.me().await?;
        let mut pages = 0;
        while let Some(resp) = listing.next(&mut self.client).await? {
            pages += 1;
            let issues = parse_issues(&resp.body)?;
            for issue in &issues {
                // Only our own issue ending in the footer marker is the lost create; a
                // stranger's copy of the marker is not.
                if issue.pull_request.is_none()
                    && issue.author().eq_ignore_ascii_case(&me)
                    && issue.body.as_deref().and_then(render::trailing_marker) == Some(id)
                {
                    return Ok(Some(issue.clone()));
                }
            }
            let older = issues.last().is_some_and(|i| {
                match (cutoff, chrono::DateTime::parse_from_rfc3339(&i.created_at)) {
                    (Some(c), Ok(t)) => t.with_timezone(&chrono::Utc) < c,
                    _ => false,
                }
            });
            if older || pages >= 20 {
                break;
            }
        }
        Ok(None)
    }

    pub(super) async fn push_changes(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let linked: Vec<(ItemId, i64)> = {
            let mut all = gh_store::linked_items(self.store.conn(), &repo)?;
            // A kind taken out of `[github] kinds` is private from then on.
            all.retain(|(id, _)| self.cfg.kinds.contains(&id.kind));
            all
        };
        for (id, number) in linked {
            let (item, footer) = self.rendered(id)?;
            let local = local_proj(&item, &footer);
            let stored = load_link(self.store.conn(), item.rowid)?.unwrap_or_default();
            let skip = conflict_fields(self.store.conn(), item.rowid)?;
            let m = merge(&stored.snap, &local, &stored.snap.remote, &skip);
            let footer_changed =
                local.footer != stored.snap.local.footer && !skip.contains(&Field::Body);
            let mut fields = m.push.clone();
            if footer_changed && !fields.contains(&Field::Body) {
                fields.push(Field::Body);
            }
            if fields.is_empty() {
                continue;
            }
            let mut payload = json!({});
            for f in &fields {
                match f {
                    Field::Title => payload["title"] = json!(item.title),
                    Field::Body => payload["body"] = json!(issue_body(&item, &footer)),
                    Field::State => {
                        payload["state"] = json!(if local.closed { "closed" } else { "open" })
                    }
                    Field::Labels => {
                        payload["labels"] =
                            json!(render::labels_to_send(&local.labels, &stored.label_names))
                    }
                    Field::Assignee => {
                        payload["assignees"] = json!(local.assignee.iter().collect::<Vec<_>>())
                    }
                }
            }
            let resp = match self
                .client
                .patch(&format!("/repos/{repo}/issues/{number}"), &payload)
                .await
            {
                Err(e) if is_rejection(&e) => {
                    self.skip(id, e)?;
                    continue;
                }
                other => other?,
            };
            let issue: Issue = resp.json()?;
            let remote = issue.proj(item.kind);
            let mut stored = stored;
            for f in &fields {
                stored.snap.local.take(*f, &local);
                stored.snap.remote.take(*f, &remote);
            }
            stored.snap.local.footer = local.footer.clone();
            stored.label_names = issue.label_names();
            self.store.write(|tx, ctx| {
                save_link(tx, ctx, &repo, item.rowid, number, &stored)?;
                Ok(())
            })?;
            self.report.pushed += 1;
            self.report.events.push(format!(
                "updated #{number} from {id} ({})",
                fields
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }

    pub(super) async fn push_comments(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let todo = gh_store::unposted_comments(self.store.conn(), &repo)?;
        let mut issue_comments: HashMap<i64, Vec<IssueComment>> = HashMap::new();
        for c in todo {
            let (cid, item_id, number) = (c.id, c.item, c.issue);
            if !self.cfg.kinds.contains(&item_id.kind) {
                continue;
            }
            let marker = comment_marker(cid);
            if c.pending
                && let Some(remote) = self
                    .find_comment(number, &marker, &mut issue_comments)
                    .await?
            {
                self.map_comment(cid, remote)?;
                continue;
            }
            let body = comment_body(
                &format!("**{}** (labbook):\n\n{}", c.author, c.body),
                &marker,
                &format!("a comment on {item_id}"),
            );
            self.store
                .write(|tx, _| gh_store::begin_comment_post(tx, cid, &repo))?;
            let path = format!("/repos/{repo}/issues/{number}/comments");
            let mut attempt = 0;
            loop {
                let sent = match self.client.post(&path, &json!({ "body": body })).await {
                    Err(e) if is_rejection(&e) => {
                        // Refused for good (deleted issue, validation): nothing was posted.
                        self.store
                            .write(|tx, _| gh_store::forget_comment_post(tx, cid))?;
                        let msg = format!("a comment of {item_id}: {e}");
                        self.report.events.push(format!("skipped {msg}"));
                        self.report.skipped.push(msg);
                        break;
                    }
                    other => other?,
                };
                match sent {
                    Sent::Done(resp) => {
                        let c: IssueComment = resp.json()?;
                        self.map_comment(cid, c.id)?;
                        self.report.comments_out += 1;
                        self.report
                            .events
                            .push(format!("posted a comment of {item_id} on #{number}"));
                        break;
                    }
                    Sent::Unknown(why) => {
                        issue_comments.remove(&number);
                        if let Some(remote) = self
                            .find_comment(number, &marker, &mut issue_comments)
                            .await?
                        {
                            self.map_comment(cid, remote)?;
                            break;
                        }
                        attempt += 1;
                        if attempt > self.cfg.retries {
                            return Err(Error::Github(format!(
                                "could not post a comment of {item_id}: {why}; run sync again (it will not duplicate)"
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn map_comment(&mut self, cid: i64, remote: i64) -> Result<()> {
        let repo = self.repo().to_string();
        self.store
            .write(|tx, _| gh_store::map_comment(tx, cid, &repo, remote))
    }

    pub(super) async fn find_comment(
        &mut self,
        number: i64,
        marker: &str,
        cache: &mut HashMap<i64, Vec<IssueComment>>,
    ) -> Result<Option<i64>> {
        let known = cache.contains_key(&number);
        if !known {
            let repo = self.repo().to_string();
            let path = format!("/repos/{repo}/issues/{number}/comments?per_page=100");
            let all = self.client.get_all(&path, parse_comments).await?;
            cache.insert(number, all);
        }
        let me = self.me().await?;
        Ok(cache[&number]
            .iter()
            .find(|c| {
                c.author().eq_ignore_ascii_case(&me)
                    && c.body
                        .as_deref()
                        .is_some_and(|b| b.trim_end().ends_with(marker))
            })
            .map(|c| c.id))
    }
}

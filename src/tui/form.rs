//! The add/edit form: a list of text fields with validation. Pure data; rendering is in
//! `views/form.rs`.
use labbook::model::{Fields, Item, ItemId, ItemPatch, Kind, NewItem, fields_for, normalize_tag};

#[derive(Debug, Clone, PartialEq)]
pub enum FormTarget {
    Add(Kind),
    Edit(ItemId),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormField {
    pub name: &'static str,
    pub value: String,
    pub original: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormState {
    pub target: FormTarget,
    pub kind: Kind,
    pub fields: Vec<FormField>,
    pub focus: usize,
    /// Submitted and waiting for the worker.
    pub saving: bool,
    /// An error from the store after submitting.
    pub error: Option<String>,
}

fn field(name: &'static str, value: String) -> FormField {
    FormField {
        name,
        original: value.clone(),
        value,
        error: None,
    }
}

impl FormState {
    pub fn add(kind: Kind) -> FormState {
        let mut fields = vec![
            field("title", String::new()),
            field("status", kind.default_status().to_string()),
            field("tags", String::new()),
        ];
        fields.extend(fields_for(kind).iter().map(|n| field(n, String::new())));
        fields.push(field("body", String::new()));
        // The default status is not a user edit.
        FormState {
            target: FormTarget::Add(kind),
            kind,
            fields,
            focus: 0,
            saving: false,
            error: None,
        }
    }

    pub fn edit(item: &Item) -> FormState {
        let mut fields = vec![
            field("title", item.title.clone()),
            field("status", item.status.clone()),
            field("tags", item.tags.join(", ")),
        ];
        fields.extend(
            fields_for(item.kind)
                .iter()
                .map(|n| field(n, item.fields.get(n).unwrap_or_default())),
        );
        FormState {
            target: FormTarget::Edit(item.id),
            kind: item.kind,
            fields,
            focus: 0,
            saving: false,
            error: None,
        }
    }

    pub fn dirty(&self) -> bool {
        self.fields.iter().any(|f| f.value != f.original)
    }

    pub fn value(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
            .unwrap_or("")
    }

    pub fn focused_mut(&mut self) -> &mut FormField {
        let i = self.focus.min(self.fields.len() - 1);
        &mut self.fields[i]
    }

    /// Whether the focused field is a choice (the status), not free text.
    pub fn focused_is_choice(&self) -> bool {
        self.fields[self.focus.min(self.fields.len() - 1)].name == "status"
    }

    /// Moves the focused choice field `by` steps through the kind's statuses (wrapping), or
    /// to the first status starting with `letter`.
    pub fn choose(&mut self, by: isize, letter: Option<char>) {
        let statuses = self.kind.statuses();
        let field = self.focused_mut();
        let at = statuses.iter().position(|s| *s == field.value.trim());
        let next = match letter {
            Some(c) => statuses
                .iter()
                .position(|s| s.starts_with(c.to_ascii_lowercase()))
                .or(at),
            None => {
                let n = statuses.len() as isize;
                let from = at.map(|i| i as isize).unwrap_or(-1);
                Some((from + by).rem_euclid(n) as usize)
            }
        };
        if let Some(i) = next {
            field.value = statuses[i].to_string();
            field.error = None;
        }
    }

    /// A hint shown under the focused field.
    pub fn hint(&self) -> String {
        match self.fields[self.focus].name {
            "status" => format!(
                "←/→ or space choose; one of: {}",
                self.kind.statuses().join(", ")
            ),
            "tags" => TAGS_HINT.into(),
            "due" => "YYYY-MM-DD".into(),
            "priority" | "year" => "a whole number".into(),
            "body" => "Markdown; use E later for a full editor".into(),
            _ => String::new(),
        }
    }

    /// Checks every field, marking errors; returns whether the form is valid.
    pub fn validate(&mut self) -> bool {
        let kind = self.kind;
        for f in &mut self.fields {
            let v = f.value.trim();
            f.error = match f.name {
                "title" if v.is_empty() => Some("a title is required".into()),
                "status" => kind
                    .check_status(v)
                    .err()
                    .map(|_| format!("not a {kind} status ({})", kind.statuses().join(", "))),
                "tags" => split_tags(v).err(),
                "title" | "body" => None,
                name => Fields::default()
                    .set(kind, name, Some(v))
                    .err()
                    .map(|e| e.to_string()),
            };
        }
        if let Some(i) = self.fields.iter().position(|f| f.error.is_some()) {
            self.focus = i;
            false
        } else {
            true
        }
    }

    pub fn to_new_item(&self) -> NewItem {
        let mut n = NewItem::new(self.kind, self.value("title").trim());
        n.status = Some(self.value("status").trim().to_string());
        n.tags = split_tags(self.value("tags")).unwrap_or_default();
        n.body = self.value("body").to_string();
        for name in fields_for(self.kind) {
            let _ = n.fields.set(self.kind, name, Some(self.value(name).trim()));
        }
        n
    }

    /// The changes as a patch (only fields that differ from the item).
    pub fn to_patch(&self) -> ItemPatch {
        let mut p = ItemPatch::default();
        for f in self.fields.iter().filter(|f| f.value != f.original) {
            let v = f.value.trim().to_string();
            match f.name {
                "title" => p.title = Some(v),
                "status" => p.status = Some(v),
                "tags" => p.tags = Some(split_tags(&v).unwrap_or_default()),
                name => p
                    .fields
                    .push((name.to_string(), Some(v).filter(|v| !v.is_empty()))),
            }
        }
        p
    }
}

/// How the tags field reads what is typed.
pub const TAGS_HINT: &str = "spaces or commas separate tags";

fn split_tags(text: &str) -> Result<Vec<String>, String> {
    text.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| normalize_tag(t).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_chosen_not_typed() {
        let mut f = FormState::add(Kind::Task);
        f.focus = f.fields.iter().position(|x| x.name == "status").unwrap();
        assert!(f.focused_is_choice());
        let statuses = Kind::Task.statuses();
        let start = statuses
            .iter()
            .position(|s| *s == f.value("status"))
            .unwrap();
        f.choose(1, None);
        assert_eq!(f.value("status"), statuses[(start + 1) % statuses.len()]);
        f.choose(-1, None);
        f.choose(-1, None);
        let back = (start + statuses.len() - 1) % statuses.len();
        assert_eq!(f.value("status"), statuses[back]);
        f.choose(0, Some('D'));
        assert_eq!(f.value("status"), "doing");
        f.choose(0, Some('z'));
        assert_eq!(f.value("status"), "doing", "no status starts with z");
    }

    #[test]
    fn validation_marks_bad_fields() {
        let mut f = FormState::add(Kind::Task);
        assert!(!f.dirty());
        assert!(!f.validate());
        assert_eq!(f.fields[0].error.as_deref(), Some("a title is required"));
        f.fields[0].value = "Port the scan".into();
        f.fields
            .iter_mut()
            .find(|x| x.name == "priority")
            .unwrap()
            .value = "high".into();
        f.fields
            .iter_mut()
            .find(|x| x.name == "status")
            .unwrap()
            .value = "read".into();
        assert!(!f.validate());
        assert_eq!(f.fields[f.focus].name, "status");
        assert!(
            f.fields
                .iter()
                .find(|x| x.name == "priority")
                .unwrap()
                .error
                .is_some()
        );
        f.fields
            .iter_mut()
            .find(|x| x.name == "priority")
            .unwrap()
            .value = "1".into();
        f.fields
            .iter_mut()
            .find(|x| x.name == "status")
            .unwrap()
            .value = "doing".into();
        f.fields
            .iter_mut()
            .find(|x| x.name == "tags")
            .unwrap()
            .value = "CUDA, Fast path,ssm".into();
        assert!(f.validate());
        let n = f.to_new_item();
        assert_eq!(n.fields.priority, Some(1));
        assert_eq!(n.tags, vec!["cuda", "fast", "path", "ssm"]);
        assert_eq!(n.status.as_deref(), Some("doing"));
    }
}

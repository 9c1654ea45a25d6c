//! The `general.*` description keys: the model's name and organization, license, tags,
//! languages, base models and datasets, from the model card (the YAML front matter of
//! `README.md`) and the Hugging Face id in `config.json`'s `_name_or_path`, by the
//! conventions llama.cpp's converter follows:
//!
//! - An id `org/Some-model_name` gives the name `Some Model_name` and the organization
//!   `Org`: dashes become spaces and each all-lowercase word is title-cased (a word that is
//!   a version like `v2` or starts with a digit is kept). The card's `name`/`model_name`
//!   and `organization` take precedence; the folder's name is the last resort.
//! - `license` (a list is joined with commas), `license_name`, `license_link`.
//! - `base_model` and `datasets`: each id becomes an entry with a name, an organization
//!   and a `https://huggingface.co/...` repository URL when it has an organization.
//! - `tags` then `pipeline_tag`; `languages` then `language`.
//!
//! Not derived (llama.cpp guesses them from the words of the id): `general.basename`,
//! `finetune` and `version`. The front matter is read with a small parser for the flat
//! `key: value` / `- item` subset model cards use; anything else in it is skipped.

use std::path::Path;

use hearth_gguf::{GgufWriter, Value};

/// One base model or dataset.
#[derive(Debug, Default, PartialEq)]
pub struct Entry {
    pub name: Option<String>,
    pub organization: Option<String>,
    pub repo_url: Option<String>,
}

/// What the card and the id say.
#[derive(Debug, Default)]
pub struct Card {
    pub name: String,
    pub organization: Option<String>,
    pub license: Option<String>,
    pub license_name: Option<String>,
    pub license_link: Option<String>,
    pub base_models: Option<Vec<Entry>>,
    pub datasets: Option<Vec<Entry>>,
    pub tags: Option<Vec<String>>,
    pub languages: Option<Vec<String>>,
}

/// A front-matter value: a scalar or a list of scalars.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Str(String),
    List(Vec<String>),
    /// A nested mapping or a list of mappings: not used.
    Other,
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let quoted = s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')));
    if quoted {
        s[1..s.len() - 1].to_owned()
    } else {
        s.to_owned()
    }
}

/// The front matter of a model card: the lines between a first line `---` and the next
/// `---`, as top-level keys.
fn front_matter(text: &str) -> Vec<(String, Yaml)> {
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Vec::new();
    }
    let mut out: Vec<(String, Yaml)> = Vec::new();
    for raw in lines {
        let line = raw.trim_end();
        if line == "---" {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = trimmed.len() != line.len();
        if let Some(item) =
            trimmed
                .strip_prefix("- ")
                .or(if trimmed == "-" { Some("") } else { None })
        {
            // An item of the last key's block list.
            if let Some((_, value)) = out.last_mut() {
                let is_scalar = !item.contains(": ") && !item.ends_with(':');
                match value {
                    Yaml::List(v) if is_scalar => v.push(unquote(item)),
                    Yaml::Str(s) if s.is_empty() && is_scalar => {
                        *value = Yaml::List(vec![unquote(item)])
                    }
                    _ => *value = Yaml::Other,
                }
            }
            continue;
        }
        if indented {
            // Part of a nested mapping.
            if let Some((_, value)) = out.last_mut() {
                *value = Yaml::Other;
            }
            continue;
        }
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        let rest = rest.trim();
        let value = if let Some(inner) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            Yaml::List(
                inner
                    .split(',')
                    .map(unquote)
                    .filter(|s| !s.is_empty())
                    .collect(),
            )
        } else {
            Yaml::Str(unquote(rest))
        };
        out.push((key.trim().to_owned(), value));
    }
    out
}

/// Python's `str.title()` on one word: a letter after a letter is lowercased, any other
/// letter uppercased (`s2orc` → `S2Orc`).
fn title_word(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    let mut prev_cased = false;
    for c in w.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = cased;
    }
    out
}

/// Whether a word is a version (`v2`, `v1.5`) or starts with a digit.
fn is_version_or_number(w: &str) -> bool {
    if w.starts_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    let Some(rest) = w.strip_prefix('v') else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// An id as a title: dashes become spaces; all-lowercase words are title-cased unless
/// they are versions or numbers.
pub fn id_to_title(id: &str) -> String {
    id.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let has_cased = w.chars().any(|c| c.is_lowercase() || c.is_uppercase());
            let all_lower = !w.chars().any(char::is_uppercase);
            if has_cased && all_lower && !is_version_or_number(w) {
                title_word(w)
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `org/name` → (name, org); an organization starting with `.` (a relative path) is none.
fn id_components(id: &str) -> (String, Option<String>) {
    if id.contains(' ') {
        return (id.to_owned(), None);
    }
    match id.split_once('/') {
        Some((org, name)) => {
            let org = Some(org).filter(|o| !o.is_empty() && !o.starts_with('.'));
            (name.to_owned(), org.map(str::to_owned))
        }
        None => (id.to_owned(), None),
    }
}

/// A base model or dataset entry from its id or URL.
fn entry(id: &str) -> Entry {
    if ["http://", "https://", "ssh://"]
        .iter()
        .any(|p| id.starts_with(p))
    {
        let mut e = Entry {
            repo_url: Some(id.to_owned()),
            ..Entry::default()
        };
        let hf = id
            .strip_prefix("https://huggingface.co/")
            .or_else(|| id.strip_prefix("http://huggingface.co/"));
        if let Some(path) =
            hf.filter(|p| p.matches('/').count() == 1 && !p.ends_with('/') && !p.starts_with('/'))
        {
            let (name, org) = id_components(path);
            e.name = Some(id_to_title(&name));
            e.organization = org.map(|o| id_to_title(&o));
        }
        return e;
    }
    let (name, org) = id_components(id);
    Entry {
        name: Some(id_to_title(&name)),
        repo_url: org
            .as_ref()
            .map(|o| format!("https://huggingface.co/{o}/{name}")),
        organization: org.map(|o| id_to_title(&o)),
    }
}

impl Card {
    /// Reads the card of `dir` (`README.md`, if any) and the model id (`_name_or_path`).
    pub fn load(dir: &Path, name_or_path: Option<&str>) -> Card {
        let fm = std::fs::read_to_string(dir.join("README.md"))
            .map(|t| front_matter(&t))
            .unwrap_or_default();
        let get = |key: &str| fm.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let string = |key: &str| match get(key) {
            Some(Yaml::Str(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let list = |keys: &[&str]| -> Option<Vec<String>> {
            let mut out: Option<Vec<String>> = None;
            for k in keys {
                match get(k) {
                    Some(Yaml::Str(s)) if !s.is_empty() => {
                        out.get_or_insert_default().push(s.clone())
                    }
                    Some(Yaml::List(v)) => out.get_or_insert_default().extend(v.iter().cloned()),
                    _ => {}
                }
            }
            out
        };
        let entries = |keys: &[&str]| -> Option<Vec<Entry>> {
            let ids = keys.iter().find_map(|k| match get(k) {
                Some(Yaml::Str(s)) if !s.is_empty() => Some(vec![s.clone()]),
                Some(Yaml::List(v)) => Some(v.clone()),
                _ => None,
            })?;
            Some(ids.iter().map(|id| entry(id)).collect())
        };

        let mut name = string("name").or_else(|| string("model_name"));
        let mut organization = string("organization").or_else(|| string("model_organization"));
        let ids = [
            name_or_path.filter(|p| p.matches('/').count() <= 1),
            dir.file_name().and_then(|n| n.to_str()),
        ];
        for id in ids.into_iter().flatten() {
            let (n, org) = id_components(id);
            if name.is_none() {
                name = Some(id_to_title(&n));
            }
            if organization.is_none() {
                organization = org.map(|o| id_to_title(&o));
            }
        }
        let license = match get("license") {
            Some(Yaml::Str(s)) if !s.is_empty() => Some(s.clone()),
            Some(Yaml::List(v)) => Some(v.join(",")),
            _ => None,
        };
        Card {
            name: name.unwrap_or_else(|| "model".to_owned()),
            organization,
            license,
            license_name: string("license_name"),
            license_link: string("license_link"),
            base_models: entries(&["base_model", "base_models", "base_model_sources"]),
            datasets: entries(&["datasets", "dataset", "dataset_sources"]),
            tags: list(&["tags", "pipeline_tag"]),
            languages: list(&["languages", "language"]),
        }
    }

    /// Writes the keys, in llama.cpp's order, with `size_label` between the organization
    /// and the license.
    pub fn write(&self, w: &mut GgufWriter, size_label: &str) {
        w.add_kv("general.name", self.name.as_str());
        if let Some(o) = &self.organization {
            w.add_kv("general.organization", o.as_str());
        }
        w.add_kv("general.size_label", size_label);
        let opt = |w: &mut GgufWriter, key: &str, v: &Option<String>| {
            if let Some(v) = v {
                w.add_kv(key, v.as_str());
            }
        };
        opt(w, "general.license", &self.license);
        opt(w, "general.license.name", &self.license_name);
        opt(w, "general.license.link", &self.license_link);
        for (what, entries) in [
            ("base_model", &self.base_models),
            ("dataset", &self.datasets),
        ] {
            let Some(entries) = entries else { continue };
            w.add_kv(format!("general.{what}.count"), entries.len() as u32);
            for (i, e) in entries.iter().enumerate() {
                opt(w, &format!("general.{what}.{i}.name"), &e.name);
                opt(
                    w,
                    &format!("general.{what}.{i}.organization"),
                    &e.organization,
                );
                opt(w, &format!("general.{what}.{i}.repo_url"), &e.repo_url);
            }
        }
        if let Some(tags) = &self.tags {
            w.add_kv("general.tags", Value::from(tags.clone()));
        }
        if let Some(langs) = &self.languages {
            w.add_kv("general.languages", Value::from(langs.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_titles() {
        assert_eq!(
            id_to_title("MiniLM-L6-H384-uncased"),
            "MiniLM L6 H384 Uncased"
        );
        assert_eq!(id_to_title("nreimers"), "Nreimers");
        assert_eq!(id_to_title("s2orc"), "S2Orc");
        assert_eq!(id_to_title("flickr30k-captions"), "Flickr30K Captions");
        assert_eq!(id_to_title("bge-small-en-v1.5"), "Bge Small En v1.5");
        assert_eq!(id_to_title("stackexchange_xml"), "Stackexchange_Xml");
        assert_eq!(id_to_title("QQP"), "QQP");
    }

    #[test]
    fn entries_from_ids() {
        assert_eq!(
            entry("embedding-data/QQP"),
            Entry {
                name: Some("QQP".into()),
                organization: Some("Embedding Data".into()),
                repo_url: Some("https://huggingface.co/embedding-data/QQP".into()),
            }
        );
        assert_eq!(entry("s2orc").repo_url, None);
    }

    #[test]
    fn front_matter_subset() {
        let fm = front_matter(
            "---\nlanguage: en\nlicense: apache-2.0\ntags:\n- a\n- 'b'\nmodel-index:\n  - name: x\n    results: []\nlist: [x, \"y\"]\n---\n# Title\nkey: not read\n",
        );
        assert_eq!(fm[0], ("language".into(), Yaml::Str("en".into())));
        assert_eq!(
            fm[2],
            ("tags".into(), Yaml::List(vec!["a".into(), "b".into()]))
        );
        assert_eq!(fm[3], ("model-index".into(), Yaml::Other));
        assert_eq!(
            fm[4],
            ("list".into(), Yaml::List(vec!["x".into(), "y".into()]))
        );
        assert_eq!(fm.len(), 5);
        assert!(front_matter("no front matter\n---\n").is_empty());
    }
}

//! SecretSync manifests: the model, parsing and validation of a revision's files into the
//! set of valid SecretSyncs and a diagnostic for every problem (file, line, field).
//! Pure: no I/O, no cluster.

mod documents;
mod model;
mod names;
mod parse;
mod selector;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

pub use self::model::{
    ADOPT_ANNOTATION, API_VERSION, DELETION_POLICY_ANNOTATION, DeletionPolicy, KIND, Provenance,
    SUSPEND_ANNOTATION, SecretRef, SecretSync, SecretSyncKey, SecretSyncSpec, SyncOptions,
};
use self::parse::{ParsedFile, parse_file};
pub use self::selector::{InvalidSelector, LabelSelector, Operator, Requirement};
use crate::source::{Revision, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A problem in a manifest file. Never holds secret data: manifests reference Secrets by
/// name only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Path of the file in the repository.
    pub path: String,
    /// 1-based line, when the YAML gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Field path, e.g. `spec.clusterSelector.matchExpressions[0].operator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The SecretSync the problem belongs to, when it could be named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<SecretSyncKey>,
    pub message: String,
}

impl Diagnostic {
    fn error(
        path: &str,
        line: Option<usize>,
        field: Option<String>,
        object: Option<SecretSyncKey>,
        message: String,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.to_owned(),
            line,
            field,
            object,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    /// Compiler style: `path:line: error: SecretSync ns/name: field: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: ")?;
        if let Some(object) = &self.object {
            write!(f, "SecretSync {object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The SecretSyncs of one revision.
#[derive(Debug, Clone)]
pub struct ManifestSet {
    pub revision: Revision,
    /// Valid SecretSyncs, sorted by key.
    pub syncs: Vec<SecretSync>,
    /// Sorted by file and line.
    pub diagnostics: Vec<Diagnostic>,
    /// SecretSyncs defined in this revision but invalid in it: their last good state must
    /// be kept, not pruned.
    pub invalid: BTreeSet<SecretSyncKey>,
    /// Files with a document that could not be read far enough to name its object: what
    /// they defined before must be kept too.
    pub broken_files: BTreeSet<String>,
    /// Files parsed for this set (the others came from the cache).
    pub files_parsed: usize,
}

impl ManifestSet {
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Parses snapshots into manifest sets, caching each file's result by path and content id,
/// so that a commit that changes one file parses one file.
#[derive(Debug)]
pub struct Parser {
    default_namespace: String,
    cache: HashMap<(String, String), Arc<ParsedFile>>,
}

impl Parser {
    /// `default_namespace` is used for SecretSyncs without `metadata.namespace`.
    #[must_use]
    pub fn new(default_namespace: &str) -> Self {
        Parser {
            default_namespace: default_namespace.to_owned(),
            cache: HashMap::new(),
        }
    }

    /// Whether the parse of this exact file (path and content id) is cached: a source need
    /// not read its content again (`FileContent::Known`).
    #[must_use]
    pub fn knows(&self, path: &str, id: &str) -> bool {
        // Keys are owned pairs; a lookup by borrowed parts would need a custom key type for
        // a few thousand short strings, which is not worth it.
        self.cache.contains_key(&(path.to_owned(), id.to_owned()))
    }

    pub fn parse(&mut self, snapshot: &Snapshot) -> ManifestSet {
        let mut files_parsed = 0;
        let mut cache = HashMap::with_capacity(snapshot.files.len());
        for file in &snapshot.files {
            let key = (file.path.clone(), file.id.clone());
            let parsed = self.cache.remove(&key).unwrap_or_else(|| {
                files_parsed += 1;
                Arc::new(parse_file(
                    &file.path,
                    &file.content,
                    &self.default_namespace,
                ))
            });
            cache.insert(key, parsed);
        }
        // Only this snapshot's files stay cached: memory follows the repository's size.
        self.cache = cache;
        let mut set = assemble(
            &snapshot.revision,
            snapshot
                .files
                .iter()
                .map(|f| &self.cache[&(f.path.clone(), f.id.clone())]),
            snapshot.files.iter().map(|f| f.path.as_str()),
        );
        set.files_parsed = files_parsed;
        set
    }
}

/// Every definition of a SecretSync defined more than once gets an error; none is applied.
fn report_duplicates(set: &mut ManifestSet, definitions: &[SecretSync]) {
    let places: Vec<String> = definitions
        .iter()
        .map(|d| format!("{}:{}", d.provenance.path, d.provenance.line))
        .collect();
    let message = format!(
        "defined more than once in this revision ({}); none of them is applied",
        places.join(", ")
    );
    for definition in definitions {
        set.diagnostics.push(Diagnostic::error(
            &definition.provenance.path,
            Some(definition.provenance.line),
            None,
            Some(definition.key.clone()),
            message.clone(),
        ));
    }
    set.invalid.insert(definitions[0].key.clone());
}

/// Joins the files' results, refusing SecretSyncs defined more than once.
fn assemble<'a>(
    revision: &Revision,
    files: impl Iterator<Item = &'a Arc<ParsedFile>>,
    paths: impl Iterator<Item = &'a str>,
) -> ManifestSet {
    let mut set = ManifestSet {
        revision: revision.clone(),
        syncs: Vec::new(),
        diagnostics: Vec::new(),
        invalid: BTreeSet::new(),
        broken_files: BTreeSet::new(),
        files_parsed: 0,
    };
    let mut all: Vec<SecretSync> = Vec::new();
    for (parsed, path) in files.zip(paths) {
        set.diagnostics.extend(parsed.diagnostics.iter().cloned());
        set.invalid.extend(parsed.invalid.iter().cloned());
        if parsed.broken {
            set.broken_files.insert(path.to_owned());
        }
        all.extend(parsed.syncs.iter().map(|sync| SecretSync {
            key: sync.key.clone(),
            labels: sync.labels.clone(),
            annotations: sync.annotations.clone(),
            spec: sync.spec.clone(),
            options: sync.options,
            provenance: Provenance {
                revision: revision.clone(),
                path: path.to_owned(),
                document: sync.document,
                line: sync.line,
            },
        }));
    }
    // Sorted by key (stable: file order within a key), duplicates sit side by side.
    all.sort_by(|a, b| a.key.cmp(&b.key));
    let mut syncs = all.into_iter().peekable();
    while let Some(first) = syncs.next() {
        let mut duplicates = Vec::new();
        while let Some(next) = syncs.next_if(|next| next.key == first.key) {
            duplicates.push(next);
        }
        if !duplicates.is_empty() {
            duplicates.insert(0, first);
            report_duplicates(&mut set, &duplicates);
        } else if !set.invalid.contains(&first.key) {
            set.syncs.push(first);
        }
    }
    set.diagnostics
        .sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FileContent, SourceFile};

    fn sync_yaml(name: &str, environment: &str) -> String {
        format!(
            "apiVersion: capi.weave.works/v1alpha1\nkind: SecretSync\nmetadata:\n  name: {name}\n\
             spec:\n  clusterSelector:\n    matchLabels:\n      environment: {environment}\n  secretRef:\n    name: registry\n"
        )
    }

    fn snapshot(commit: char, files: &[(&str, String)]) -> Snapshot {
        Snapshot {
            revision: Revision::new(Some("main"), &commit.to_string().repeat(40)).unwrap(),
            commit: None,
            files: files
                .iter()
                .map(|(path, text)| SourceFile {
                    path: (*path).to_owned(),
                    // Content ids as a source gives them: equal content, equal id.
                    id: format!(
                        "{:x}",
                        text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
                    ),
                    content: FileContent::Bytes(Arc::from(text.as_bytes())),
                })
                .collect(),
        }
    }

    #[test]
    fn a_commit_that_changes_one_file_parses_one_file() {
        let mut parser = Parser::new("flux-system");
        let first = parser.parse(&snapshot(
            'a',
            &[
                ("a.yaml", sync_yaml("a", "prod")),
                ("b.yaml", sync_yaml("b", "prod")),
            ],
        ));
        assert_eq!(first.files_parsed, 2);
        assert_eq!(first.syncs.len(), 2);

        let second = parser.parse(&snapshot(
            'b',
            &[
                ("a.yaml", sync_yaml("a", "prod")),
                ("b.yaml", sync_yaml("b", "staging")),
            ],
        ));
        assert_eq!(second.files_parsed, 1);
        // Cached results carry the new revision.
        assert!(
            second
                .syncs
                .iter()
                .all(|s| s.provenance.revision == second.revision)
        );
        assert_eq!(
            second.syncs[1].spec.cluster_selector.match_labels["environment"],
            "staging"
        );
    }

    #[test]
    fn provenance_names_file_document_line_and_revision() {
        let file = format!(
            "# two syncs\n{}---\n{}",
            sync_yaml("first", "prod"),
            sync_yaml("second", "prod")
        );
        let set =
            Parser::new("flux-system").parse(&snapshot('c', &[("clusters/syncs.yaml", file)]));
        let second = &set.syncs[1];
        assert_eq!(second.key.to_string(), "flux-system/second");
        assert_eq!(second.provenance.path, "clusters/syncs.yaml");
        assert_eq!(second.provenance.document, 2);
        assert_eq!(second.provenance.line, 13);
        assert_eq!(
            second.provenance.revision.to_string(),
            format!("main@sha1:{}", "c".repeat(40))
        );
    }
}

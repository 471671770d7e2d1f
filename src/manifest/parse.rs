//! Parsing one manifest file: YAML documents → Kubernetes objects → valid `SecretSync`s,
//! and a diagnostic (file, line, field) for everything else. A bad document spoils only
//! itself; documents of other kinds are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_yaml::Value;

use super::documents::{self, Document};
use super::model::{API_GROUP, API_VERSION, KIND, SecretSyncKey, SecretSyncSpec, SyncOptions};
use super::names::{check_dns1123_label, check_dns1123_subdomain};
use super::{Diagnostic, Severity};
use crate::source::FileContent;

/// Bytes looked at to tell a binary file from text, as git does.
const BINARY_SNIFF_LEN: usize = 8000;

/// A SecretSync as read from a file, before the revision is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSync {
    pub key: SecretSyncKey,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: SecretSyncSpec,
    pub options: SyncOptions,
    pub document: usize,
    pub line: usize,
}

/// Everything one file yields. Cached by content, so it must not depend on the revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFile {
    pub syncs: Vec<ParsedSync>,
    pub diagnostics: Vec<Diagnostic>,
    /// SecretSyncs named in this file that are invalid in it.
    pub invalid: Vec<SecretSyncKey>,
    /// A document failed before the object it defines could be named.
    pub broken: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecretSync {
    // Checked before this is deserialized; strings so that serde_ignored sees them used.
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: Option<RawMetadata>,
    spec: Option<SecretSyncSpec>,
    // Status in git is meaningless but harmless (e.g. copied from `kubectl get -o yaml`).
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct RawMetadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    // Every other metadata field (uid, generateName, ...) is accepted as Kubernetes does.
    #[serde(flatten)]
    _other: BTreeMap<String, Value>,
}

/// Parses a file of the repository.
#[must_use]
pub fn parse_file(path: &str, content: &FileContent, default_namespace: &str) -> ParsedFile {
    let mut file = FileParse {
        path,
        default_namespace,
        out: ParsedFile::default(),
    };
    match content {
        FileContent::Known => {
            // Only handed out for content the parser has cached; reaching here is a bug in
            // the caller, reported rather than trusted.
            file.file_error("content was not read from the source; not parsed".to_owned());
        }
        FileContent::TooLarge { size, limit } => {
            file.file_error(format!(
                "file is {size} bytes, over the limit of {limit} bytes; not read"
            ));
        }
        FileContent::Bytes(bytes) => match text_of(bytes) {
            Some(text) => {
                for document in documents::split(text) {
                    file.document(&document);
                }
            }
            None => file.file_error("binary file (not UTF-8 text); not read as YAML".to_owned()),
        },
    }
    file.out
}

fn text_of(bytes: &[u8]) -> Option<&str> {
    if bytes[..bytes.len().min(BINARY_SNIFF_LEN)].contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// Where a problem is: the document, and an optional prefix for `List` items.
struct Place<'d, 'a> {
    document: &'d Document<'a>,
    prefix: String,
}

impl Place<'_, '_> {
    /// The file line of `field` in this place's document.
    fn line_of(&self, field: &str) -> Option<usize> {
        documents::locate(self.document.text, &documents::parse_path(field))
            .map(|line| self.document.first_line + line - 1)
    }
}

struct FileParse<'p> {
    path: &'p str,
    default_namespace: &'p str,
    out: ParsedFile,
}

impl FileParse<'_> {
    fn file_error(&mut self, message: String) {
        self.out.broken = true;
        self.out
            .diagnostics
            .push(Diagnostic::error(self.path, None, None, None, message));
    }

    fn document(&mut self, document: &Document<'_>) {
        let value: Value = match serde_yaml::from_str(document.text) {
            Ok(value) => value,
            Err(error) => {
                let line = error.location().map(|l| document.first_line + l.line() - 1);
                self.out.broken = true;
                let message = yaml_error_message(&error);
                self.out.diagnostics.push(Diagnostic::error(
                    self.path,
                    line.or(Some(document.content_line())),
                    None,
                    None,
                    message,
                ));
                return;
            }
        };
        let place = Place {
            document,
            prefix: String::new(),
        };
        match &value {
            Value::Null => {}
            Value::Mapping(_) if value["kind"] == "List" => self.list(&value, &place),
            Value::Mapping(_) => self.object(value.clone(), &place),
            _ => self.warn(
                &place,
                None,
                "document is not a Kubernetes object (a mapping with apiVersion and kind); ignored",
            ),
        }
    }

    fn list(&mut self, value: &Value, place: &Place<'_, '_>) {
        let Some(items) = value["items"].as_sequence() else {
            self.warn(place, Some("items"), "a List without items; ignored");
            return;
        };
        for (index, item) in items.iter().enumerate() {
            let item_place = Place {
                document: place.document,
                prefix: format!("items[{index}]."),
            };
            self.object(item.clone(), &item_place);
        }
    }

    fn object(&mut self, value: Value, place: &Place<'_, '_>) {
        let kind = value["kind"].as_str().unwrap_or_default();
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.split_once('/').map_or("", |(group, _)| group);
        if kind == KIND && api_version == API_VERSION {
            self.secret_sync(value, place);
        } else if kind == KIND && group == API_GROUP {
            self.error(
                place,
                None,
                Some("apiVersion"),
                format!("{api_version:?} is not served for kind SecretSync: use {API_VERSION}"),
            );
        } else if kind.eq_ignore_ascii_case(KIND) && group == API_GROUP {
            self.error(
                place,
                None,
                Some("kind"),
                format!("kind {kind:?} is not known in {API_GROUP}: did you mean {KIND}?"),
            );
        } else if kind == KIND {
            self.warn(
                place,
                Some("apiVersion"),
                &format!("a SecretSync of {api_version:?}, not {API_VERSION}; ignored"),
            );
        }
    }

    fn secret_sync(&mut self, value: Value, place: &Place<'_, '_>) {
        // Named before the typed read, so that even a type error says which SecretSync it is.
        let key = SecretSyncKey {
            namespace: value["metadata"]["namespace"]
                .as_str()
                .unwrap_or(self.default_namespace)
                .to_owned(),
            name: value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let (raw, unknown) = match read_typed(value) {
            Ok(read) => read,
            Err(error) => {
                let (field, message) = type_error(&error);
                self.error(place, Some(&key), Some(&field), message);
                self.invalid(key);
                return;
            }
        };
        let errors_before = self.error_count();
        for field in unknown {
            self.unknown_field(place, &key, &field);
        }
        let metadata = raw.metadata.unwrap_or_default();
        self.check_metadata(place, &key, &metadata);
        if let Some(spec) = &raw.spec {
            self.check_spec(place, &key, spec);
        } else {
            self.error(place, Some(&key), Some("spec"), "is required".to_owned());
        }
        let options = SyncOptions::from_annotations(&metadata.annotations).unwrap_or_else(
            |(field, message)| {
                self.error(place, Some(&key), Some(&field), message);
                SyncOptions::default()
            },
        );
        match raw.spec {
            Some(spec) if self.error_count() == errors_before => {
                let line = place.line_of(place.prefix.trim_end_matches('.'));
                self.out.syncs.push(ParsedSync {
                    key,
                    labels: metadata.labels,
                    annotations: metadata.annotations,
                    spec,
                    options,
                    document: place.document.index,
                    line: line.unwrap_or(place.document.content_line()),
                });
            }
            _ => self.invalid(key),
        }
    }

    /// Records that `key` is defined here but invalid; without a name, the whole file is.
    fn invalid(&mut self, key: SecretSyncKey) {
        if key.name.is_empty() {
            self.out.broken = true;
        } else {
            self.out.invalid.push(key);
        }
    }

    fn check_metadata(
        &mut self,
        place: &Place<'_, '_>,
        key: &SecretSyncKey,
        metadata: &RawMetadata,
    ) {
        match &metadata.name {
            None => self.error(place, None, Some("metadata.name"), "is required".to_owned()),
            Some(name) => self.check(place, key, "metadata.name", check_dns1123_subdomain(name)),
        }
        if metadata.namespace.is_some() {
            self.check(
                place,
                key,
                "metadata.namespace",
                check_dns1123_label(&key.namespace),
            );
        }
    }

    fn check_spec(&mut self, place: &Place<'_, '_>, key: &SecretSyncKey, spec: &SecretSyncSpec) {
        self.check(
            place,
            key,
            "spec.secretRef.name",
            check_dns1123_subdomain(&spec.secret_ref.name),
        );
        if let Some(target) = &spec.target_namespace {
            self.check(
                place,
                key,
                "spec.targetNamespace",
                check_dns1123_label(target),
            );
        }
        for problem in spec.cluster_selector.problems() {
            let field = match problem.field.as_str() {
                "" => "spec.clusterSelector".to_owned(),
                sub => format!("spec.clusterSelector.{sub}"),
            };
            self.error(place, Some(key), Some(&field), problem.message);
        }
    }

    fn unknown_field(&mut self, place: &Place<'_, '_>, key: &SecretSyncKey, field: &str) {
        if field == "spec.secretRef.namespace" {
            let message =
                "is not supported: a SecretSync only reads Secrets of its own namespace".to_owned();
            self.error(place, Some(key), Some(field), message);
        } else {
            self.warn_about(place, Some(key), Some(field), "unknown field; ignored");
        }
    }

    fn check(
        &mut self,
        place: &Place<'_, '_>,
        key: &SecretSyncKey,
        field: &str,
        result: Result<(), String>,
    ) {
        if let Err(message) = result {
            self.error(place, Some(key), Some(field), message);
        }
    }

    fn error(
        &mut self,
        place: &Place<'_, '_>,
        key: Option<&SecretSyncKey>,
        field: Option<&str>,
        message: String,
    ) {
        self.push(Severity::Error, place, key, field, message);
    }

    fn warn(&mut self, place: &Place<'_, '_>, field: Option<&str>, message: &str) {
        self.push(Severity::Warning, place, None, field, message.to_owned());
    }

    fn warn_about(
        &mut self,
        place: &Place<'_, '_>,
        key: Option<&SecretSyncKey>,
        field: Option<&str>,
        message: &str,
    ) {
        self.push(Severity::Warning, place, key, field, message.to_owned());
    }

    fn push(
        &mut self,
        severity: Severity,
        place: &Place<'_, '_>,
        key: Option<&SecretSyncKey>,
        field: Option<&str>,
        message: String,
    ) {
        let field = field.map(|f| format!("{}{f}", place.prefix));
        let line = field
            .as_deref()
            .and_then(|f| place.line_of(f))
            .unwrap_or(place.document.content_line());
        let object = key.filter(|k| !k.name.is_empty()).cloned();
        self.out.diagnostics.push(Diagnostic {
            severity,
            path: self.path.to_owned(),
            line: Some(line),
            field,
            object,
            message,
        });
    }

    fn error_count(&self) -> usize {
        self.out
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// The typed object, and the paths of the fields it does not know.
fn read_typed(
    value: Value,
) -> Result<(RawSecretSync, Vec<String>), serde_path_to_error::Error<serde_yaml::Error>> {
    let mut unknown = Vec::new();
    let raw = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        value,
        &mut |path: serde_ignored::Path<'_>| {
            // serde_ignored writes `?` for the inside of an Option.
            unknown.push(path.to_string().replace(".?", ""));
        },
    ))?;
    Ok((raw, unknown))
}

/// serde_yaml's message without its position (which is relative to the document, not the
/// file), and plain words for the limits that stop hostile documents.
fn yaml_error_message(error: &serde_yaml::Error) -> String {
    let message = error.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    match message.as_str() {
        "repetition limit exceeded" => {
            "too many alias expansions (a \"billion laughs\" document?); not parsed".to_owned()
        }
        "recursion limit exceeded" => "nested more than 128 levels deep; not parsed".to_owned(),
        _ => format!("invalid YAML: {message}"),
    }
}

/// The field and message of a type error, e.g. a missing required field.
fn type_error(error: &serde_path_to_error::Error<serde_yaml::Error>) -> (String, String) {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        let full = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return (full, "is required".to_owned());
    }
    (path, message)
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// YAML-ish text: SecretSync keywords, indentation and punctuation mixed at random,
    /// which reaches deeper into the parser than uniform noise.
    fn yamlish() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just("apiVersion: capi.weave.works/v1alpha1\n".to_owned()),
            Just("kind: SecretSync\n".to_owned()),
            Just("metadata:\n  name: x\n".to_owned()),
            Just("spec:\n".to_owned()),
            Just("  clusterSelector:\n    matchLabels: {a: b}\n".to_owned()),
            Just("  secretRef: {name: s}\n".to_owned()),
            Just("---\n".to_owned()),
            Just("  - ".to_owned()),
            Just(": ".to_owned()),
            Just("{[".to_owned()),
            "\\PC{0,12}",
        ];
        proptest::collection::vec(pieces, 0..16).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn any_file_parses_without_panicking_and_points_into_itself(text in yamlish()) {
            let lines = text.lines().count().max(1);
            let content = FileContent::Bytes(text.as_bytes().into());
            let parsed = parse_file("f.yaml", &content, "default");
            for diagnostic in &parsed.diagnostics {
                prop_assert_eq!(diagnostic.path.as_str(), "f.yaml");
                if let Some(line) = diagnostic.line {
                    prop_assert!(line >= 1 && line <= lines + 1, "line {} of {}", line, lines);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let content = FileContent::Bytes(bytes.into());
            let _ = parse_file("f.yaml", &content, "default");
        }
    }
}

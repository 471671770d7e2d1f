//! The management cluster's side of the environment (the library's `testenv::fleet`), and
//! the repository's fixtures the tests load.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

pub use secretsync::testenv::fleet::*;

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every YAML document of a file in the repository, deserialized.
pub fn load_documents<T: DeserializeOwned>(relative: &str) -> Vec<T> {
    let path = repo_path(relative);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| T::deserialize(doc).unwrap_or_else(|e| panic!("parse {}: {e}", path.display())))
        .collect()
}

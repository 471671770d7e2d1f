//! Label selector text (`--watch-label-selector`): parsed or refused, never a panic; what
//! parses prints as text that parses back to the same selector, and matching never panics.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use secretsync::manifest::LabelSelector;

fuzz_target!(|text: &str| {
    let Ok(selector) = text.parse::<LabelSelector>() else {
        return;
    };
    let printed = selector.to_string();
    let again: LabelSelector = printed.parse().expect("a selector's own text parses");
    assert_eq!(again, selector);
    let labels = BTreeMap::from([("app".to_owned(), text.to_owned())]);
    let _ = selector.matches(&labels);
});

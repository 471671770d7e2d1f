//! A kubeconfig Secret's bytes: turned into a client configuration or refused, never a
//! panic, and no error shows the Secret's bytes.
#![no_main]

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use libfuzzer_sys::fuzz_target;
use secretsync::cluster::{ClusterKey, ClusterName, Kubeconfig, KubeconfigLocation};

fuzz_target!(|data: &[u8]| {
    let secret = Secret {
        data: Some(BTreeMap::from([(
            "value".to_owned(),
            ByteString(data.to_vec()),
        )])),
        ..Secret::default()
    };
    let cluster = ClusterKey {
        namespace: "default".to_owned(),
        name: ClusterName::new("leaf".to_owned()),
    };
    let location = KubeconfigLocation {
        secret: "leaf-kubeconfig".to_owned(),
        keys: &["value"],
    };
    let Ok(kubeconfig) = Kubeconfig::from_secret(cluster, &location, secret) else {
        return;
    };
    if let Err(error) = futures::executor::block_on(kubeconfig.config()) {
        let shown = format!("{error} {error:?}");
        // Long enough not to occur in a message by chance.
        if data.len() >= 16 {
            if let Ok(text) = std::str::from_utf8(data) {
                assert!(!shown.contains(text), "an error shows the kubeconfig");
            }
        }
    }
});

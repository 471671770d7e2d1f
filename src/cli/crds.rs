//! `secretsync crds`: prints the CustomResourceDefinitions shipped in `deploy/crds/`.

use std::io::Write;

use clap::Args;

/// The CRDs, compiled in so that the binary alone can install them.
pub const GITOPS_CLUSTER_CRD: &str =
    include_str!("../../deploy/crds/gitopsclusters.gitops.weave.works.yaml");
pub const SECRET_SYNC_CRD: &str =
    include_str!("../../deploy/crds/secretsyncs.capi.weave.works.yaml");

#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Print only the SecretSync CRD (for a management cluster that already has Weave
    /// GitOps' GitopsCluster CRD).
    #[arg(long)]
    pub secretsync_only: bool,
}

pub fn run(args: &CrdsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if !args.secretsync_only {
        out.write_all(GITOPS_CLUSTER_CRD.as_bytes())?;
        out.write_all(b"---\n")?;
    }
    out.write_all(SECRET_SYNC_CRD.as_bytes())?;
    Ok(())
}

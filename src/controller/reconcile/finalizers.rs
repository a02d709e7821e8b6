//! The Quarantine finalizer, and the migration of objects that carry the one earlier versions used
//! (decision 141). The earlier name equalled the release annotation's (`autoguardrails.io/release`),
//! so a `kubectl annotate` and a finalizer looked alike in every listing. Objects that carry it are
//! honoured exactly as before: a live one gets the new name in place of the old in one guarded
//! patch; one being deleted is released first, and only then is the old finalizer removed (the API
//! server refuses new finalizers on an object being deleted, so it is never renamed then).

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    Patch as JsonPatch, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;

use super::Error;
use crate::controller::crd::Quarantine;

/// The finalizer that holds a Quarantine until its deny is released.
pub const FINALIZER: &str = "autoguardrails.io/deny-release";
/// The finalizer of earlier versions, honoured and replaced.
pub const LEGACY_FINALIZER: &str = "autoguardrails.io/release";

/// What to do with an object's finalizers before the usual reconcile.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    /// No legacy finalizer: reconcile as usual.
    None,
    /// A live object with the legacy finalizer (at this index) and not the new one: rename it.
    Rename(usize),
    /// An object being deleted that holds the legacy finalizer (at this index) and not the new
    /// one: release as the new one would, then remove the legacy one.
    Release(usize),
    /// Both finalizers (at this index the legacy one): the new one holds, drop the legacy one.
    Drop(usize),
}

/// Which migration `q` needs.
pub fn migration(q: &Quarantine) -> Migration {
    let finalizers = q.metadata.finalizers.as_deref().unwrap_or_default();
    let Some(index) = finalizers.iter().position(|f| f == LEGACY_FINALIZER) else {
        return Migration::None;
    };
    if finalizers.iter().any(|f| f == FINALIZER) {
        Migration::Drop(index)
    } else if q.metadata.deletion_timestamp.is_some() {
        Migration::Release(index)
    } else {
        Migration::Rename(index)
    }
}

fn pointer(index: usize) -> PointerBuf {
    PointerBuf::from_tokens([
        "metadata".to_string(),
        "finalizers".to_string(),
        index.to_string(),
    ])
}

/// Replaces the legacy finalizer at `index` by [`FINALIZER`] (guarded by a test of the value, so a
/// concurrent change of the list makes it fail and the reconcile retry).
pub async fn rename(api: &Api<Quarantine>, name: &str, index: usize) -> Result<Action, Error> {
    let path = pointer(index);
    let patch = JsonPatch(vec![
        PatchOperation::Test(TestOperation {
            path: path.clone(),
            value: LEGACY_FINALIZER.into(),
        }),
        PatchOperation::Replace(ReplaceOperation {
            path,
            value: FINALIZER.into(),
        }),
    ]);
    api.patch::<Quarantine>(name, &PatchParams::default(), &Patch::Json(patch))
        .await?;
    // The patch's watch event reconciles the object again, now with the new finalizer.
    Ok(Action::await_change())
}

/// Removes the legacy finalizer at `index` (guarded by a test of the value).
pub async fn remove(api: &Api<Quarantine>, name: &str, index: usize) -> Result<(), Error> {
    let path = pointer(index);
    let patch = JsonPatch(vec![
        PatchOperation::Test(TestOperation {
            path: path.clone(),
            value: LEGACY_FINALIZER.into(),
        }),
        PatchOperation::Remove(RemoveOperation { path }),
    ]);
    api.patch::<Quarantine>(name, &PatchParams::default(), &Patch::Json(patch))
        .await?;
    Ok(())
}

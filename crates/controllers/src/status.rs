//! Writing a controller's observations to an object's status subresource.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{is_status, ControllerError};

/// Merge-patches `{"status": status}` onto `obj`'s status subresource. An
/// object deleted meanwhile is not an error: the next reconcile sees it gone.
pub async fn write_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<(), ControllerError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize,
{
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let patch = serde_json::json!({ "status": status });
    match api
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(ControllerError::api(
            format!(
                "updating status of {} {ns}/{}",
                K::kind(&()).to_lowercase(),
                obj.name_any()
            ),
            e,
        )),
    }
}

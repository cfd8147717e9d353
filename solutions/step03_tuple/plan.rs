//! The plan: what a parent controller must do to close the gap between the
//! children it wants and the objects that exist.
//!
//! `plan` compares the two without touching the cluster: create what is
//! missing, put back what drifted, delete what is no longer wanted. Whatever
//! caused the gap (a new parent, an edited or deleted child, a shorter list),
//! the same steps close it. `send` turns each change into its request; the
//! kit sends them, several at once, and tells them in Events (kit/src/children.rs).
//!
//! A child is ours when its `ownerReferences` name the parent's uid with
//! `controller: true`. An object that merely has a wanted name is not ours: we
//! leave it alone and report the clash.

use std::fmt::Debug;
use std::sync::Arc;

use kit::children::Change;
use kit::{Plan, is_controlled_by};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::object::HasSpec;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Compares the wanted children of the parent `owner_uid` with the `existing`
/// objects of the same kind in its namespace.
pub fn plan<K>(owner_uid: &str, wanted: Vec<K>, existing: &[Arc<K>]) -> Plan<K>
where
    K: Resource + HasSpec,
    K::Spec: PartialEq,
{
    let wanted_names: Vec<String> = wanted.iter().map(|child| child.name_any()).collect();
    let mut plan = Plan::empty();
    for mut child in wanted {
        let name = child.name_any();
        match existing.iter().find(|object| object.name_any() == name) {
            None => plan.create.push(child),
            Some(object) if !is_controlled_by(object.as_ref(), owner_uid) => plan.clashes.push(name),
            Some(object) if object.spec() != child.spec() => {
                // Carry the uid we saw: should the object have been replaced
                // since, the API server refuses the write instead of taking
                // over someone else's object.
                child.meta_mut().uid = object.uid();
                plan.update.push(child);
            }
            Some(_) => {}
        }
    }
    plan.delete = existing
        .iter()
        .filter(|object| {
            is_controlled_by(object.as_ref(), owner_uid)
                && !wanted_names.contains(&object.name_any())
                // Already being deleted (it waits for a finalizer): asking again changes nothing.
                && object.meta().deletion_timestamp.is_none()
        })
        .cloned()
        .collect();
    plan
}

/// Sends the request that makes one change of a plan, and returns the child
/// as the API server answered (for a delete: as it was).
pub async fn send<K>(children: &Api<K>, change: Change<'_, K>) -> kube::Result<K>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    match change {
        // `create`, not apply: it fails if the name was taken since the cache
        // looked, so that a foreign object is never taken over.
        Change::Create(child) => {
            let params = PostParams {
                field_manager: Some(kit::CONTROLLER_NAME.to_string()),
                dry_run: false,
            };
            children.create(&params, child).await
        }
        // Server-side apply, as for a status. The uid that `plan` carried
        // makes the API server refuse it if the object was replaced since.
        Change::Update(child) => {
            let params = PatchParams::apply(kit::CONTROLLER_NAME).force();
            children.patch(&child.name_any(), &params, &Patch::Apply(child)).await
        }
        // The uid precondition deletes this very object, never a newer one of the same name.
        Change::Delete(object) => {
            let uid = Preconditions {
                uid: object.uid(),
                resource_version: None,
            };
            children
                .delete(&object.name_any(), &DeleteParams::default().preconditions(uid))
                .await?;
            Ok(object.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::{Number, NumberSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    const PARENT: &str = "parent-uid";

    /// A Number as the cluster would hold it, controlled by `controller` if given.
    fn existing(name: &str, value: i64, controller: Option<&str>) -> Arc<Number> {
        let mut number = Number::new(name, NumberSpec { value });
        number.metadata.uid = Some(format!("{name}-uid"));
        number.metadata.owner_references = controller.map(|uid| {
            vec![OwnerReference {
                controller: Some(true),
                uid: uid.to_string(),
                ..OwnerReference::default()
            }]
        });
        Arc::new(number)
    }

    fn wanted(name: &str, value: i64) -> Number {
        Number::new(name, NumberSpec { value })
    }

    fn names<K: Resource>(objects: &[K]) -> Vec<String> {
        objects.iter().map(|object| object.name_any()).collect()
    }

    #[test]
    fn missing_children_are_created() {
        let plan = plan(PARENT, vec![wanted("t-0", 1), wanted("t-1", 4)], &[]);
        assert_eq!(names(&plan.create), ["t-0", "t-1"]);
        assert!(plan.update.is_empty() && plan.delete.is_empty() && plan.clashes.is_empty());
    }

    #[test]
    fn children_that_match_need_no_request() {
        let plan = plan(PARENT, vec![wanted("t-0", 1)], &[existing("t-0", 1, Some(PARENT))]);
        assert!(plan.is_empty());
        assert!(plan.clashes.is_empty());
    }

    #[test]
    fn an_edited_child_is_put_back_and_the_write_is_pinned_to_its_uid() {
        let plan = plan(PARENT, vec![wanted("t-0", 1)], &[existing("t-0", 7, Some(PARENT))]);
        assert_eq!(names(&plan.update), ["t-0"]);
        assert_eq!(plan.update[0].spec.value, 1);
        assert_eq!(plan.update[0].metadata.uid.as_deref(), Some("t-0-uid"));
    }

    #[test]
    fn children_no_longer_wanted_are_deleted() {
        let existing = [existing("t-0", 1, Some(PARENT)), existing("t-1", 4, Some(PARENT))];
        let plan = plan(PARENT, vec![wanted("t-0", 1)], &existing);
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.delete[0].name_any(), "t-1");
    }

    #[test]
    fn objects_of_other_controllers_are_never_deleted() {
        let existing = [existing("other", 1, Some("someone-else")), existing("loose", 2, None)];
        let plan = plan(PARENT, Vec::new(), &existing);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_wanted_name_held_by_a_foreign_object_is_a_clash_not_an_update() {
        let existing = [existing("t-0", 9, None), existing("t-1", 9, Some("someone-else"))];
        let plan = plan(PARENT, vec![wanted("t-0", 1), wanted("t-1", 4)], &existing);
        assert_eq!(plan.clashes, ["t-0", "t-1"]);
        assert!(plan.is_empty());
    }

    #[test]
    fn a_child_already_being_deleted_is_not_deleted_again() {
        let mut terminating = (*existing("t-1", 4, Some(PARENT))).clone();
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let plan = plan(
            PARENT,
            vec![wanted("t-0", 1)],
            &[existing("t-0", 1, Some(PARENT)), Arc::new(terminating)],
        );
        assert!(plan.is_empty());
    }
}

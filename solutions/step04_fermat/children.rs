//! Owning children: what a parent controller does with the objects it owns.
//!
//! The parent says which children it wants; the cluster holds the children that
//! exist. `plan` compares the two without touching the cluster, and `apply`
//! carries the plan out: create what is missing, put back what drifted, delete
//! what is no longer wanted. Whatever caused the gap (a new parent, an edited
//! or deleted child, a shorter list), the same steps close it.
//!
//! A child is ours when its `ownerReferences` name the parent's uid with
//! `controller: true`. An object that merely has a wanted name is not ours: we
//! leave it alone and report the clash.

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::object::HasSpec;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::FIELD_MANAGER;

/// What to do with the children of one parent.
#[derive(Debug)]
pub struct Plan<K> {
    /// Wanted children that do not exist.
    pub create: Vec<K>,
    /// Wanted children that we control but whose spec differs from the wanted one.
    pub update: Vec<K>,
    /// Children that we control but no longer want.
    pub delete: Vec<Arc<K>>,
    /// Wanted names taken by objects that we do not control.
    pub clashes: Vec<String>,
}

impl<K> Plan<K> {
    /// Whether carrying out the plan would send no request at all.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Whether `child` names the object with uid `owner_uid` as its controller.
pub fn is_controlled_by<K: Resource>(child: &K, owner_uid: &str) -> bool {
    child
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == owner_uid)
}

/// Compares the wanted children of the parent `owner_uid` with the `existing`
/// objects of the same kind in its namespace.
pub fn plan<K>(owner_uid: &str, wanted: Vec<K>, existing: &[Arc<K>]) -> Plan<K>
where
    K: Resource + HasSpec,
    K::Spec: PartialEq,
{
    let wanted_names: Vec<String> = wanted.iter().map(|child| child.name_any()).collect();
    let mut plan = Plan {
        create: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
        clashes: Vec::new(),
    };
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
        .filter(|object| is_controlled_by(object.as_ref(), owner_uid) && !wanted_names.contains(&object.name_any()))
        .cloned()
        .collect();
    plan
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {kind} {name}: {source}")]
    Create {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot update {kind} {name}: {source}")]
    Update {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Carries out `plan` in the namespace of `api`. Returns the names it could
/// not create because they were taken: our cache had not seen those objects yet.
pub async fn apply<K>(api: &Api<K>, plan: &Plan<K>) -> Result<Vec<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let kind = K::kind(&()).to_string();
    let mut taken = Vec::new();
    for child in &plan.create {
        let name = child.name_any();
        // `create`, not apply: it fails if the name was taken since our cache
        // last looked, so a foreign object can never be taken over.
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match api.create(&params, child).await {
            Ok(_) => {}
            // Usually our own child, created moments ago and not yet in the cache.
            Err(kube::Error::Api(status)) if status.is_already_exists() => taken.push(name),
            Err(source) => {
                return Err(Error::Create {
                    kind: kind.clone(),
                    name,
                    source,
                });
            }
        }
    }
    for child in &plan.update {
        let name = child.name_any();
        // Server-side apply: `force` takes back the fields that someone else edited.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(child))
            .await
            .map_err(|source| Error::Update {
                kind: kind.clone(),
                name,
                source,
            })?;
    }
    for child in &plan.delete {
        let name = child.name_any();
        // The uid precondition deletes this very object, never a newer one of the same name.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: child.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            // Already gone: the goal is reached.
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => {
                return Err(Error::Delete {
                    kind: kind.clone(),
                    name,
                    source,
                });
            }
        }
    }
    Ok(taken)
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
    fn an_owner_reference_that_is_not_the_controller_does_not_make_a_child_ours() {
        let mut number = Number::new("t-0", NumberSpec { value: 1 });
        number.metadata.owner_references = Some(vec![OwnerReference {
            controller: None,
            uid: PARENT.to_string(),
            ..OwnerReference::default()
        }]);
        assert!(!is_controlled_by(&number, PARENT));
    }
}

//! Writing a parent's status: stage 2's request, sent once.
//!
//! The request is the one that stage 2 writes for a Number: server-side
//! apply through the status subresource, of the fields the controller owns
//! (`apiVersion`, `kind` and `status`), under its field manager name, with
//! `force`, since the status is the controller's:
//!
//! ```text
//! let patch = json!({ "apiVersion": Tuple::api_version(&()), "kind": Tuple::kind(&()), "status": status });
//! let params = PatchParams::apply(CONTROLLER_NAME).force();
//! tuples.patch_status(&name, &params, &Patch::Apply(&patch)).await?;
//! ```
//!
//! In Go it is `r.Status().Update(ctx, &obj)` (or `Patch`).
//!
//! What [`StatusWriter`] adds is bookkeeping for a lag, which only parents
//! meet. A controller reads its objects from a watch, which shows a write a
//! moment after it was made. A parent woken by its children right after its
//! status was written may still be handed the old copy: it would compute the
//! same new status, see that the copy differs, and send it again. The writer
//! remembers what it wrote over which version of each object, and does not
//! send the same status over the same version twice. A status that someone
//! else changed since is written again: the copy then shows a newer version.
//! A Number is woken by nothing but its own changes, so stage 2 needs none of this.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use crate::CONTROLLER_NAME;

/// How long a write is remembered. The watch shows every write within
/// moments; this only bounds the memory kept for objects deleted since.
const REMEMBERED_FOR: Duration = Duration::from_secs(10);

/// Writes the status of objects of kind `K`, each status once.
pub struct StatusWriter<K> {
    api: Api<K>,
    sent: Mutex<Sent>,
}

/// The statuses written lately, per object, and when they were last pruned.
struct Sent {
    by_object: HashMap<String, SentStatus>,
    pruned_at: Instant,
}

/// One status written (as the JSON sent), and the version of the object it
/// was written over.
struct SentStatus {
    over: Option<String>,
    status: serde_json::Value,
    sent_at: Instant,
}

impl<K> StatusWriter<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    /// A writer for the objects that `api` reaches.
    pub fn new(api: Api<K>) -> Self {
        let sent = Sent {
            by_object: HashMap::new(),
            pruned_at: Instant::now(),
        };
        StatusWriter {
            api,
            sent: Mutex::new(sent),
        }
    }

    /// Writes `status` to `object` (as the watch showed it), and logs it. An
    /// object deleted meanwhile is not an error: there is nothing left to do.
    pub async fn write(&self, object: &K, status: &impl Serialize) -> Result<(), kube::Error> {
        let name = object.name_any();
        let status = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
        if self.already_sent(object, &status) {
            debug!(name, "status already written; the watch does not show it yet");
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let params = PatchParams::apply(CONTROLLER_NAME).force();
        match self.api.patch_status(&name, &params, &Patch::Apply(&patch)).await {
            Ok(_) => {
                let status = &patch["status"];
                info!(name, %status, "wrote status");
                self.remember(object, status.clone());
                Ok(())
            }
            Err(kube::Error::Api(response)) if response.is_not_found() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Whether `status` was written over the version of `object` that the watch still shows.
    fn already_sent(&self, object: &K, status: &serde_json::Value) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sent = &mut sent.by_object;
        let key = key(object);
        // The watch has moved past the version we wrote over: it shows our
        // write, or something newer, and the object is the truth again.
        if sent
            .get(&key)
            .is_some_and(|write| write.over != object.resource_version())
        {
            sent.remove(&key);
        }
        sent.get(&key).is_some_and(|write| write.status == *status)
    }

    fn remember(&self, object: &K, status: serde_json::Value) {
        let mut sent = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Pruned now and then, not at every write: a settle writes thousands
        // of statuses within seconds, and looking at every one each time
        // would cost a debug build whole seconds.
        if sent.pruned_at.elapsed() > REMEMBERED_FOR {
            sent.by_object
                .retain(|_, write| write.sent_at.elapsed() < REMEMBERED_FOR);
            sent.pruned_at = Instant::now();
        }
        let write = SentStatus {
            over: object.resource_version(),
            status,
            sent_at: Instant::now(),
        };
        sent.by_object.insert(key(object), write);
    }
}

/// An object's uid, so that an object deleted and created again under the
/// same name is a new one; its name if it has none.
fn key<K: Resource>(object: &K) -> String {
    object.uid().unwrap_or_else(|| object.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::tests::{Item, ItemSpec, unused_client};

    /// An object as the watch shows it, at a resource version.
    fn item_at(version: &str) -> Item {
        let mut item = Item::new("p", ItemSpec { value: 1 });
        item.metadata.uid = Some("p-uid".to_string());
        item.metadata.resource_version = Some(version.to_string());
        item
    }

    fn writer() -> StatusWriter<Item> {
        StatusWriter::new(Api::default_namespaced(unused_client()))
    }

    #[tokio::test]
    async fn a_status_just_written_is_not_sent_again_while_the_watch_lags() {
        let writer = writer();
        writer.remember(&item_at("1"), 7.into());
        // Still the version we wrote over: the same status would be a repeat.
        assert!(writer.already_sent(&item_at("1"), &7.into()));
        // A different status is news and goes out.
        assert!(!writer.already_sent(&item_at("1"), &8.into()));
    }

    #[tokio::test]
    async fn a_status_someone_changed_after_our_write_is_written_again() {
        let writer = writer();
        writer.remember(&item_at("1"), 7.into());
        // The watch moved on (our write, then someone else's): it is the truth.
        assert!(!writer.already_sent(&item_at("3"), &7.into()));
        // And the record is gone, even back at the old version.
        assert!(!writer.already_sent(&item_at("1"), &7.into()));
    }

    #[tokio::test]
    async fn an_object_created_again_under_the_same_name_is_a_new_one() {
        let writer = writer();
        writer.remember(&item_at("1"), 7.into());
        let mut again = item_at("1");
        again.metadata.uid = Some("another-uid".to_string());
        assert!(!writer.already_sent(&again, &7.into()));
    }
}

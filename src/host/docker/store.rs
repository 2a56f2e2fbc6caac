//! The state store: named documents kept in the swarm's own replicated store (raft), so that
//! every manager sees them and they outlive any one host. What several users or managers share
//! lives here: a stack's deploy revisions (`docker::revisions`) today.
//!
//! **Why swarm config objects.** A document `NAME` is the config object `wsm-state-NAME`
//! (hashed when the name would not be a valid config name, as the lock's name is), created,
//! read, updated and removed through `state_object`, the layer the stack lock stands on too
//! (its module doc says why configs, and how a call is bounded and its failure worded). A
//! config's labels may be updated against the version read, and the swarm refuses an update
//! made against a stale version: optimistic concurrency done by the swarm itself. InfraKit
//! kept its state in one annotation of the swarm object, which serialises every writer of
//! every document on one version; one object per document lets unrelated writers pass each
//! other.
//!
//! **Encoding.** The document is JSON, gzip-compressed and base64-encoded into the label
//! `wsm.state.data`; `wsm.state.sha256` holds the digest of the JSON, checked on every read,
//! so a document changed by hand is reported, not trusted. The config's data is one line
//! saying what the object is.
//!
//! **Concurrency.** [`read`] returns the document with its version. [`write`] with the version
//! read replaces it only if nobody wrote in between; with no version it creates the document
//! only if it does not exist. Either way a concurrent writer gets [`StoreError::Conflict`]
//! and nothing is overwritten: it reads again and reapplies its change.
//!
//! **Size.** swarmkit caps one raft transaction at about 1.5 MiB (a larger update is refused
//! with "raft message is too large"). A document's encoded form may take [`MAX_ENCODED`]
//! (1 MiB), leaving room for the rest of the object. A larger document is refused with
//! [`StoreError::TooLarge`], before anything is sent; the stored version stays as it was. A
//! writer whose document grows (a history) trims it to fit (see `revisions`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use bollard::Docker;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;
use sha2::Digest;

use super::state_object::{self, object_name, ObjectError};
use super::EngineHandle;
use crate::host::doc::Prim;
use crate::host::{script_err, to_dynamic, to_json, usage_err, Host, ScriptResult};

/// The most a document may take once compressed and encoded.
pub const MAX_ENCODED: usize = 1024 * 1024;

const KIND_LABEL: &str = "wsm.state";
const NAME_LABEL: &str = "wsm.state.name";
const DATA_LABEL: &str = "wsm.state.data";
const SUM_LABEL: &str = "wsm.state.sha256";

/// A document as read: its value and the version a write must name.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub value: Value,
    pub version: u64,
}

/// Why a store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// Another writer changed (or created, or removed) the document since it was read.
    Conflict(String),
    /// The document is over [`MAX_ENCODED`] once encoded.
    TooLarge(String),
    /// The engine refused or did not answer, or the stored document is damaged.
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(m) | StoreError::TooLarge(m) | StoreError::Failed(m) => {
                f.write_str(m)
            }
        }
    }
}

/// The config object that holds document `name`.
pub fn config_name(name: &str) -> String {
    object_name("wsm-state-", name)
}

/// The document's encoded form: gzip of its JSON, base64; and the digest of the JSON.
fn encode(name: &str, value: &Value) -> Result<(String, String), StoreError> {
    let json = serde_json::to_vec(value).map_err(|e| StoreError::Failed(e.to_string()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json)
        .map_err(|e| StoreError::Failed(e.to_string()))?;
    let packed = gz.finish().map_err(|e| StoreError::Failed(e.to_string()))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(packed);
    if encoded.len() > MAX_ENCODED {
        return Err(StoreError::TooLarge(format!(
            "document {name} takes {} KiB compressed and encoded, over the store's limit of {} KiB (one swarm raft transaction); keep less in it",
            encoded.len() / 1024,
            MAX_ENCODED / 1024
        )));
    }
    Ok((encoded, hex::encode(sha2::Sha256::digest(&json))))
}

/// The most a document's JSON may take once decompressed (64 MiB).
const MAX_DECODED: u64 = 64 << 20;

/// The document back from its labels, its digest checked.
fn decode(name: &str, labels: &HashMap<String, String>) -> Result<Value, StoreError> {
    let damaged = |why: String| {
        StoreError::Failed(format!(
            "document {name} in the swarm store is damaged ({why}); remove it with `docker config rm {}`",
            config_name(name)
        ))
    };
    let data = labels
        .get(DATA_LABEL)
        .ok_or_else(|| damaged("no data".into()))?;
    let packed = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| damaged(e.to_string()))?;
    // Anyone with API access can write a label: one that decompresses past the cap is refused
    // as damaged before it takes the memory (a gzip bomb), not read whole.
    let json = crate::host::bounded::gunzip(&packed, "its data", MAX_DECODED).map_err(damaged)?;
    if labels.get(SUM_LABEL).map(String::as_str)
        != Some(hex::encode(sha2::Sha256::digest(&json)).as_str())
    {
        return Err(damaged("its digest does not match".into()));
    }
    serde_json::from_slice(&json).map_err(|e| damaged(e.to_string()))
}

/// The document that labels of a `wsm-state-*` config hold, as the store reads it: its data
/// decoded, its digest checked (the fuzz target `store_decode` drives this).
pub fn decode_labels(name: &str, labels: &HashMap<String, String>) -> Result<Value, String> {
    decode(name, labels).map_err(|e| e.to_string())
}

/// The labels the store writes for a document (the fuzz target's well-formed inputs).
pub fn encode_labels(name: &str, value: &Value) -> Result<HashMap<String, String>, String> {
    let (encoded, sum) = encode(name, value).map_err(|e| e.to_string())?;
    Ok(labels_of(name, encoded, sum))
}

fn labels_of(name: &str, encoded: String, sum: String) -> HashMap<String, String> {
    HashMap::from([
        (KIND_LABEL.into(), "1".into()),
        (NAME_LABEL.into(), name.into()),
        (DATA_LABEL.into(), encoded),
        (SUM_LABEL.into(), sum),
    ])
}

/// A failure of the layer below as a store error of document `name`.
fn from_object(name: &str, e: ObjectError) -> StoreError {
    match e {
        ObjectError::Exists => StoreError::Conflict(format!(
            "document {name} was created by another writer meanwhile; read it again and reapply the change"
        )),
        ObjectError::Changed => StoreError::Conflict(format!(
            "document {name} was changed by another writer meanwhile; read it again and reapply the change"
        )),
        ObjectError::Gone => StoreError::Conflict(format!(
            "document {name} was removed by another writer meanwhile; read it again and reapply the change"
        )),
        ObjectError::TooLarge(m) => StoreError::TooLarge(format!(
            "document {name} is too large for one swarm raft transaction: {m}"
        )),
        ObjectError::Failed(m) => StoreError::Failed(m),
    }
}

/// Reads document `name`: `None` when there is none.
pub async fn read(d: &Docker, name: &str) -> Result<Option<Doc>, StoreError> {
    let found = state_object::read(d, &config_name(name))
        .await
        .map_err(|e| from_object(name, e))?;
    let Some(object) = found else { return Ok(None) };
    Ok(Some(Doc {
        value: decode(name, &object.labels)?,
        version: object.version,
    }))
}

/// Writes document `name`: replaces the version `expected` names, or creates the document
/// when `expected` is `None`. Returns the new version. A concurrent writer's change is never
/// overwritten: the write fails with [`StoreError::Conflict`].
pub async fn write(
    d: &Docker,
    name: &str,
    value: &Value,
    expected: Option<u64>,
) -> Result<u64, StoreError> {
    let (encoded, sum) = encode(name, value)?;
    let object = config_name(name);
    let labels = labels_of(name, encoded, sum);
    let failed = |e| from_object(name, e);
    match expected {
        None => {
            let data =
                format!("wsm state document {name}: its content is in the labels ({DATA_LABEL})\n");
            state_object::create(d, &object, labels, &data)
                .await
                .map_err(failed)?;
            match state_object::read(d, &object).await.map_err(failed)? {
                Some(written) => Ok(written.version),
                None => Err(failed(ObjectError::Gone)),
            }
        }
        Some(version) => state_object::update(d, &object, &object, version, labels)
            .await
            .map_err(|e| match e {
                ObjectError::Changed => StoreError::Conflict(format!(
                    "document {name} was changed by another writer since version {version}; read it again and reapply the change"
                )),
                other => failed(other),
            }),
    }
}

/// Removes document `name`; false when there was none.
pub async fn remove(d: &Docker, name: &str) -> Result<bool, StoreError> {
    state_object::remove(d, &config_name(name))
        .await
        .map_err(|e| from_object(name, e))
}

/// The names of the stored documents that start with `prefix`.
pub async fn list(d: &Docker, prefix: &str) -> Result<Vec<String>, StoreError> {
    Ok(list_written(d, prefix)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// The stored documents that start with `prefix`, each with its version, from one listing: a
/// reader that keeps documents reads again only those whose version moved.
pub async fn list_versions(d: &Docker, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let objects = state_object::list(d, KIND_LABEL)
        .await
        .map_err(|e| from_object(prefix, e))?;
    Ok(objects
        .into_iter()
        .filter_map(|o| Some((o.labels.get(NAME_LABEL).cloned()?, o.version)))
        .filter(|(n, _)| n.starts_with(prefix))
        .collect())
}

/// The stored documents that start with `prefix`, sorted by name, each with when it was last
/// written (the engine's `UpdatedAt`, RFC 3339; "" when the engine gives none).
pub async fn list_written(d: &Docker, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
    let objects = state_object::list(d, KIND_LABEL)
        .await
        .map_err(|e| from_object(prefix, e))?;
    let mut docs: Vec<(String, String)> = objects
        .into_iter()
        .filter_map(|o| Some((o.labels.get(NAME_LABEL).cloned()?, o.updated_at)))
        .filter(|(n, _)| n.starts_with(prefix))
        .collect();
    docs.sort();
    Ok(docs)
}

/// A store error as a script error; a conflict is a map `#{conflict: message}` so a script can
/// tell it apart (`catch (e) { if e.conflict != () … }`), and prints as its message.
fn to_script(e: StoreError) -> Box<rhai::EvalAltResult> {
    match e {
        StoreError::Conflict(m) => {
            let mut map = Map::new();
            map.insert("conflict".into(), Dynamic::from(m.clone()));
            map.insert("message".into(), Dynamic::from(m));
            rhai::EvalAltResult::ErrorRuntime(Dynamic::from_map(map), rhai::Position::NONE).into()
        }
        other => script_err(other),
    }
}

/// Registers the store methods of the `Engine` type.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    let prim = Prim::new("e.store_read(name: string) -> map").doc(
        "A document of the swarm state store: `#{value, version}`, or () when there is none. The \
         stored digest is checked: a document changed by hand is an error.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, name: &str| -> ScriptResult<Dynamic> {
            match h.block(async { read(&e.docker, name).await.map_err(to_script) })? {
                None => Ok(Dynamic::UNIT),
                Some(doc) => {
                    let mut m = Map::new();
                    m.insert("value".into(), to_dynamic(&doc.value)?);
                    m.insert("version".into(), Dynamic::from(doc.version as i64));
                    Ok(m.into())
                }
            }
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.store_write(name: string, value, version) -> int").doc(
        "Writes a document over the version read (`()` or 0: creates it, only if it does not \
         exist); returns the new version. When someone else wrote meanwhile nothing is written \
         and the error is a map with `conflict`; a document over 1 MiB compressed and encoded is \
         refused.",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle,
              name: &str,
              value: Dynamic,
              version: Dynamic|
              -> ScriptResult<i64> {
            if name.is_empty() {
                return Err(usage_err("a document needs a name"));
            }
            let expected = match version.as_int() {
                Ok(v) if v > 0 => Some(v as u64),
                _ => None,
            };
            let value = to_json(&value)?;
            h.block(async {
                write(&e.docker, name, &value, expected)
                    .await
                    .map(|v| v as i64)
                    .map_err(to_script)
            })
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.store_remove(name: string) -> bool")
        .doc("Removes a document of the swarm state store; false when there was none.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, name: &str| -> ScriptResult<bool> {
            h.block(async { remove(&e.docker, name).await.map_err(to_script) })
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.store_list(prefix: string) -> array")
        .doc("The names of the store's documents that start with `prefix`, sorted.");
    prim.register(
        engine,
        move |e: &mut EngineHandle, prefix: &str| -> ScriptResult<Array> {
            let names = h.block(async { list(&e.docker, prefix).await.map_err(to_script) })?;
            Ok(names.into_iter().map(Dynamic::from).collect())
        },
    );

    let h = host.clone();
    let prim = Prim::new("e.store_versions(prefix: string) -> map").doc(
        "The store's documents that start with `prefix` and their versions, `#{name: version}`, \
         from one listing: a reader that keeps documents reads again only those whose version \
         moved (a document removed and written again has a new, higher version).",
    );
    prim.register(
        engine,
        move |e: &mut EngineHandle, prefix: &str| -> ScriptResult<Map> {
            let docs =
                h.block(async { list_versions(&e.docker, prefix).await.map_err(to_script) })?;
            Ok(docs
                .into_iter()
                .map(|(n, v)| (n.into(), Dynamic::from(v as i64)))
                .collect())
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_survives_its_encoding_and_a_changed_one_is_caught() {
        let doc = json!({"revisions": [{"rev": 1, "state": {"a": "b".repeat(1000)}}]});
        let (encoded, sum) = encode("d", &doc).unwrap();
        assert!(encoded.len() < 200, "compressed: {}", encoded.len());
        let mut labels = labels_of("d", encoded, sum);
        assert_eq!(decode("d", &labels).unwrap(), doc);
        labels.insert(SUM_LABEL.into(), "0".repeat(64));
        let e = decode("d", &labels).unwrap_err().to_string();
        assert!(
            e.contains("document d in the swarm store is damaged"),
            "{e}"
        );
    }

    #[test]
    fn a_label_that_decompresses_past_the_cap_is_damaged_not_read() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; (MAX_DECODED + 1) as usize])
            .unwrap();
        let packed = gz.finish().unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(packed);
        let labels = labels_of("bomb", encoded, "0".repeat(64));
        let e = decode("bomb", &labels).unwrap_err().to_string();
        assert!(
            e.contains("document bomb in the swarm store is damaged"),
            "{e}"
        );
        assert!(e.contains("decompressed"), "{e}");
    }

    #[test]
    fn a_document_over_the_limit_is_refused_before_anything_is_sent() {
        // Digests do not compress much.
        let big = json!((0..40000)
            .map(|i: u32| hex::encode(sha2::Sha256::digest(i.to_be_bytes())))
            .collect::<Vec<_>>());
        match encode("big", &big) {
            Err(StoreError::TooLarge(m)) => {
                assert!(m.contains("over the store's limit of 1024 KiB"), "{m}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn object_names_are_valid_config_names_for_every_document_name() {
        assert_eq!(
            config_name("stack.demo.revisions"),
            "wsm-state-stack.demo.revisions"
        );
        for name in ["a-", "x".repeat(63).as_str(), "ab_.-", "é\u{0}/"] {
            let n = config_name(name);
            assert!(n.len() <= 64, "{n}");
            assert!(n.ends_with(|c: char| c.is_ascii_alphanumeric()), "{n}");
        }
    }
}

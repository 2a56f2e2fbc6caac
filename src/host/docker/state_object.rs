//! State in swarm objects: the one layer under the state store (`store`) and the stack lock
//! (`crate::host::lock`) that creates, reads, updates and removes a swarm config object.
//!
//! **Why config objects.** A config is a raft object replicated to every manager, reachable
//! with the Engine API alone, and never seen by a container unless a service names it. Its
//! name is unique, so creating one is an atomic "take it if nobody has" ([`create`] says
//! [`ObjectError::Exists`]). Its data is immutable but its labels may change, and an update
//! names the version it was read at: the swarm refuses an update against a stale version
//! ("update out of sequence", [`ObjectError::Changed`]). Every change, even one that writes the
//! same labels again, gives the object a new version index, which is what the lock's waiters
//! watch. Its id is never reused: an object removed and created again under the same name is
//! another object, which is how a lock holder knows its lock was taken away.
//!
//! **One policy for every call.** Each call is bounded by [`DEADLINE`]; an engine that does
//! not answer in time is a failure like any other. A 404 means "absent" (`absent_on_404`), so
//! reading or removing what is not there is no error. A failure is worded one way, the action
//! and the object, then the engine's own message: `reading swarm config wsm-lock-demo: …`.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use bollard::models::{Config, ConfigSpec};
use bollard::query_parameters::{ListConfigsOptions, UpdateConfigOptions};
use bollard::Docker;
use sha2::Digest;

use super::{absent_on_404, docker_message, status_of};

/// The longest any one call on a state object may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A config object as read: what identifies it, its version and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct StateObject {
    /// The swarm's id: never the same for two objects, even of the same name.
    pub id: String,
    pub name: String,
    /// The version index, which every change raises; an update names it.
    pub version: u64,
    pub labels: HashMap<String, String>,
    /// When it was last written, as the engine says (RFC 3339; "" when it does not say).
    pub updated_at: String,
}

/// Why a call on a state object failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectError {
    /// `create`: an object of that name exists.
    Exists,
    /// `update`: the object changed since the version named.
    Changed,
    /// `update`: the object is gone.
    Gone,
    /// `update`: the swarm refused the object as too large for one raft transaction.
    TooLarge(String),
    /// The engine refused or did not answer: the action, the object and the engine's message.
    Failed(String),
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectError::Exists => f.write_str("it exists already"),
            ObjectError::Changed => f.write_str("it was changed meanwhile"),
            ObjectError::Gone => f.write_str("it was removed meanwhile"),
            ObjectError::TooLarge(m) | ObjectError::Failed(m) => f.write_str(m),
        }
    }
}

/// The one wording of a failure: `<doing> swarm config <object>: <why>`.
fn failure(doing: &str, object: &str, why: &str) -> ObjectError {
    ObjectError::Failed(format!("{doing} swarm config {object}: {why}"))
}

/// Runs one engine call under [`DEADLINE`].
async fn bounded<T>(
    doing: &str,
    object: &str,
    call: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<Result<T, bollard::errors::Error>, ObjectError> {
    tokio::time::timeout(DEADLINE, call).await.map_err(|_| {
        failure(
            doing,
            object,
            &format!(
                "the Docker engine did not answer within {} s",
                DEADLINE.as_secs()
            ),
        )
    })
}

fn from_config(cfg: Config) -> StateObject {
    let spec = cfg.spec.unwrap_or_default();
    StateObject {
        id: cfg.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        version: cfg.version.and_then(|v| v.index).unwrap_or(0),
        labels: spec.labels.unwrap_or_default(),
        updated_at: cfg.updated_at.unwrap_or_default(),
    }
}

/// A valid swarm object name `<prefix><name>`: as is when it fits (64 characters, ends
/// alphanumeric, only `[A-Za-z0-9-_.]`), else a readable part and a hash of the name.
pub fn object_name(prefix: &str, name: &str) -> String {
    let plain = format!("{prefix}{name}");
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if plain.len() <= 64
        && plain.ends_with(|c: char| c.is_ascii_alphanumeric())
        && plain.chars().all(valid)
    {
        return plain;
    }
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let readable: String = name.chars().filter(|c| valid(*c)).take(30).collect();
    format!("{prefix}{readable}-{}", &digest[..16])
}

/// Creates config `name` with `labels` and `data` (one line saying what the object is);
/// returns its id. [`ObjectError::Exists`] when an object of that name is there.
pub async fn create(
    d: &Docker,
    name: &str,
    labels: HashMap<String, String>,
    data: &str,
) -> Result<String, ObjectError> {
    let spec = ConfigSpec {
        name: Some(name.to_string()),
        labels: Some(labels),
        data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
        templating: None,
    };
    match bounded("creating", name, d.create_config(spec)).await? {
        Ok(r) => Ok(r.id),
        Err(e) if status_of(&e) == Some(409) => Err(ObjectError::Exists),
        Err(e) => Err(failure("creating", name, &docker_message(&e))),
    }
}

/// Reads the config named (or with the id) `object`: `None` when there is none.
pub async fn read(d: &Docker, object: &str) -> Result<Option<StateObject>, ObjectError> {
    match bounded("reading", object, absent_on_404(d.inspect_config(object))).await? {
        Ok(found) => Ok(found.map(from_config)),
        Err(e) => Err(failure("reading", object, &docker_message(&e))),
    }
}

/// Replaces the labels of config `object` (its name or id; `name` is its name) as read at
/// `version`; returns the new version. [`ObjectError::Changed`] when someone changed it since,
/// [`ObjectError::Gone`] when it was removed: nothing is written then.
pub async fn update(
    d: &Docker,
    object: &str,
    name: &str,
    version: u64,
    labels: HashMap<String, String>,
) -> Result<u64, ObjectError> {
    // Only labels may change; the data, left out, stays as it is.
    let spec = ConfigSpec {
        name: Some(name.to_string()),
        labels: Some(labels),
        data: None,
        templating: None,
    };
    let options = UpdateConfigOptions {
        version: version as i64,
    };
    match bounded("updating", name, d.update_config(object, spec, options)).await? {
        Ok(()) => {}
        Err(e) if docker_message(&e).contains("out of sequence") => {
            return Err(ObjectError::Changed)
        }
        Err(e) if status_of(&e) == Some(404) => return Err(ObjectError::Gone),
        Err(e) if docker_message(&e).contains("too large") => {
            return Err(ObjectError::TooLarge(format!(
                "updating swarm config {name}: {}",
                docker_message(&e)
            )))
        }
        Err(e) => return Err(failure("updating", name, &docker_message(&e))),
    }
    match read(d, object).await? {
        Some(now) => Ok(now.version),
        None => Err(ObjectError::Gone),
    }
}

/// Removes the config named (or with the id) `object`; false when there was none.
pub async fn remove(d: &Docker, object: &str) -> Result<bool, ObjectError> {
    match bounded("removing", object, absent_on_404(d.delete_config(object))).await? {
        Ok(found) => Ok(found.is_some()),
        Err(e) => Err(failure("removing", object, &docker_message(&e))),
    }
}

/// Every config carrying the label `label` (any value).
pub async fn list(d: &Docker, label: &str) -> Result<Vec<StateObject>, ObjectError> {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let options = ListConfigsOptions {
        filters: Some(filters),
    };
    let what = format!("(label {label})");
    match bounded("listing", &what, d.list_configs(Some(options))).await? {
        Ok(configs) => Ok(configs.into_iter().map(from_config).collect()),
        Err(e) => Err(failure("listing", &what, &docker_message(&e))),
    }
}

//! Keys wsm makes in the swarm and never sees again: a random key created straight into a
//! docker secret, whose data the Engine API never gives back. Only a service the secret is
//! mounted into can read it (the jobs runner signs and checks job documents with it,
//! `digest::hmac`); the script that asked for it gets nothing but whether it was made.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use base64::Engine as _;
use bollard::models::SecretSpec;
use rhai::{Engine, Map};

use super::{docker_message, status_of, EngineHandle};
use crate::host::doc::Prim;
use crate::host::{script_err, usage_err, Host, ScriptResult};

/// The bytes of a new key.
const KEY_BYTES: usize = 32;

/// Creates secret `name` holding a fresh random key (its bytes, or as `text` their 64 hex
/// digits); false when a secret of that name exists (its key is kept: the documents it signed,
/// the token its users hold, stay valid).
async fn create_random(
    d: &bollard::Docker,
    name: &str,
    labels: HashMap<String, String>,
    text: bool,
) -> ScriptResult<bool> {
    let mut key = [0u8; KEY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| script_err(format!("cannot read random bytes: {e}")))?;
    let spec = SecretSpec {
        name: Some(name.to_string()),
        labels: Some(labels),
        data: Some(if text {
            base64::engine::general_purpose::STANDARD.encode(hex::encode(key))
        } else {
            base64::engine::general_purpose::STANDARD.encode(key)
        }),
        ..Default::default()
    };
    match d.create_secret(spec).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(409) => Ok(false),
        Err(e) => Err(script_err(format!(
            "creating secret {name}: {}",
            docker_message(&e)
        ))),
    }
}

/// The labels of a script's map, as the Engine API takes them.
fn label_map(labels: &Map) -> HashMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Registers `e.secret_create_random` and `e.secret_create_token`.
pub(super) fn register(engine: &mut Engine, host: &Arc<Host>) {
    let prims = [
        (
            Prim::new("e.secret_create_random(name: string, labels: map) -> bool").doc(
                "Creates the secret `name` holding a fresh random key (32 bytes) that nobody is \
                 shown: only a service it is mounted into can read it. False when a secret of \
                 that name exists (its key is kept).",
            ),
            false,
        ),
        (
            Prim::new("e.secret_create_token(name: string, labels: map) -> bool").doc(
                "Creates the secret `name` holding a fresh random token, 64 hex digits (32 random \
                 bytes) that nobody is shown: only a service it is mounted into can read it \
                 (where it is a token file, as `wsm serve --token-file` reads). False when a \
                 secret of that name exists (its token is kept).",
            ),
            true,
        ),
    ];
    for (prim, text) in prims {
        let h = host.clone();
        prim.register(
            engine,
            move |e: &mut EngineHandle, name: &str, labels: Map| -> ScriptResult<bool> {
                if name.is_empty() {
                    return Err(usage_err("a secret needs a name"));
                }
                h.block(create_random(&e.docker, name, label_map(&labels), text))
            },
        );
    }
}

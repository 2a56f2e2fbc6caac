//! `digest::` — digests and keyed digests (HMAC-SHA256, RFC 2104) of values a script holds.
//! A document kept where others can write it (the swarm store) is authenticated with a key the
//! script never sees: the key is read here from a file (a docker secret mounted into one
//! service) and used at once; only the MAC goes back. A value's digest is taken over its
//! canonical JSON (object keys sorted, no spaces), so the same document read back from the
//! store has the same digest.

use rhai::{Dynamic, Engine, Module};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::doc::Prim;
use super::{script_err, to_json, ScriptResult};

/// The most a key file may hold: a key, not a document.
const MAX_KEY: u64 = 4096;
const BLOCK: usize = 64;

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The canonical text of a JSON value: keys sorted at every level, no spaces.
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// The key in `path`: the whole file, which must hold 16 to 4096 bytes.
fn read_key(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut key = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY + 1).read_to_end(&mut key))
        .map_err(|e| format!("cannot read the key {path}: {e}"))?;
    if key.len() < 16 || key.len() as u64 > MAX_KEY {
        return Err(format!(
            "the key {path} holds {} bytes: a key has 16 to {MAX_KEY}",
            key.len()
        ));
    }
    Ok(key)
}

/// Whether two byte strings are equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Registers the `digest::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    let prim =
        Prim::new("digest::sha256(text: string) -> string").doc("The SHA-256 of the text, hex.");
    prim.set_in(&mut m, |text: &str| -> ScriptResult<String> {
        Ok(hex::encode(Sha256::digest(text.as_bytes())))
    });
    let prim = Prim::new("digest::canonical(value) -> string").doc(
        "The value's canonical JSON: map keys sorted at every level, no spaces; the same value \
         read back from the store gives the same text.",
    );
    prim.set_in(&mut m, |value: Dynamic| -> ScriptResult<String> {
        Ok(canonical(&to_json(&value)?))
    });
    let prim = Prim::new("digest::hmac(key_file: string, text: string) -> string").doc(
        "HMAC-SHA256 of the text under the key held in `key_file` (16 to 4096 bytes), hex. The \
         key never reaches the script.",
    );
    prim.set_in(
        &mut m,
        |key_file: &str, text: &str| -> ScriptResult<String> {
            let key = read_key(key_file).map_err(script_err)?;
            Ok(hex::encode(hmac_sha256(&key, text.as_bytes())))
        },
    );
    let prim =
        Prim::new("digest::hmac_verify(key_file: string, text: string, mac: string) -> bool").doc(
            "Whether `mac` (hex) is the text's HMAC-SHA256 under the key in `key_file`, compared \
             in constant time.",
        );
    prim.set_in(
        &mut m,
        |key_file: &str, text: &str, mac: &str| -> ScriptResult<bool> {
            let key = read_key(key_file).map_err(script_err)?;
            let want = hmac_sha256(&key, text.as_bytes());
            Ok(hex::decode(mac).is_ok_and(|m| same(&m, &want)))
        },
    );
    engine.register_static_module("digest", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1 and 6 (a key longer than the block).
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn canonical_text_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}

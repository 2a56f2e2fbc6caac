//! What wsm treats as a secret, and the one place that keeps secret values out of what it
//! prints and out of what it leaves readable on the swarm.
//!
//! **What is secret.** A value under a secret name: a key a script declared secret
//! (`config::declare_secrets`) or one named like a password, secret, token or key
//! (`config::is_secret_key`), as an environment entry `NAME=value`, an option
//! `--name=value`, or a label; and the password of credentials inside a URL
//! (`https://user:pass@host`), whatever the name.
//!
//! **In output** ([`mask_json`], [`mask_text`], [`mask_change`]): secret values become
//! `********` in plans, history, `--json` and errors, unless the command was given
//! `--show-secrets`. A change still names the key that changed.
//!
//! **At rest** ([`seal_json`], [`open_json`]): a service spec kept in the swarm store (a
//! revision) holds each secret value sealed (ChaCha20-Poly1305) with the operator's key, never
//! in clear. The key is `WSM_SECRETS_KEY` (64 hex digits, or any passphrase, which is hashed),
//! else the file `$XDG_CONFIG_HOME/wsm/secrets.key`, made (0600, 32 random bytes) on first use.
//! It is never written to the swarm: anything wsm can read back through the Engine API, anyone
//! with read access to the API can read too (a docker secret's data is the one exception, and
//! wsm cannot read that either), so a key kept on the swarm would protect nothing. Operators who
//! roll back each other's deploys share the key (the variable, or a copy of the file); a
//! rollback to a revision sealed with another key is refused, naming the values it cannot
//! open, before anything changes.
//!
//! **Object names.** A secret made from a file is versioned by a keyed hash of its content
//! ([`keyed_version`]), so its name does not let anyone test guesses of the content.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use sha2::Digest;

use super::docker::diff::Change;

/// What a masked value shows.
pub const MASK: &str = "********";

/// Keys the scripts declared secret (`config::declare_secrets`), beside the ones named so.
static DECLARED_SECRETS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether a key holds a secret, to be masked in output and written 0600: a key a script
/// declared secret, and anything named like a token, password, secret or key (`NODE_KEYS`,
/// `API_KEY`, `SSH_PRIVATE_KEY`).
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    DECLARED_SECRETS
        .lock()
        .expect("declared secrets")
        .contains(&upper)
        || ["TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "CREDENTIAL"]
            .iter()
            .any(|w| upper.contains(w))
}

/// Declares keys secret from now on (`config::declare_secrets`).
pub fn declare(keys: impl IntoIterator<Item = String>) {
    let mut declared = DECLARED_SECRETS.lock().expect("declared secrets");
    declared.extend(keys.into_iter().map(|k| k.to_ascii_uppercase()));
}

/// How a sealed value starts: the scheme, then the key's id, then base64 of nonce and
/// ciphertext.
pub const SEALED: &str = "wsm-sealed:v1:";

/// Whether a name (an environment key, an option, a label) holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    !name.is_empty() && is_secret_key(name)
}

/// Characters a name of a `NAME=value` entry may hold.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-".contains(c)
}

/// A `NAME=value` (or `--name=value`) entry whose name is secret: its name and value.
fn secret_entry(s: &str) -> Option<(&str, &str)> {
    let (name, value) = s.split_once('=')?;
    (!name.is_empty() && name.chars().all(name_char) && is_secret_name(name))
        .then_some((name, value))
}

/// The byte ranges of the passwords of URL credentials in a text (`scheme://user:pass@host`).
fn url_passwords(s: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = s[from..].find("://") {
        let start = from + at + 3;
        let end = s[start..]
            .find(|c: char| c.is_whitespace() || "/?#\"'`,;<>()[]{}".contains(c))
            .map_or(s.len(), |i| start + i);
        let authority = &s[start..end];
        if let Some(at_sign) = authority.rfind('@') {
            if let Some(colon) = authority[..at_sign].find(':') {
                if colon + 1 < at_sign {
                    out.push(start + colon + 1..start + at_sign);
                }
            }
        }
        from = end.max(start);
    }
    out
}

/// Whether a text holds URL credentials with a password.
fn has_url_password(s: &str) -> bool {
    !url_passwords(s).is_empty()
}

/// A text with the passwords of its URL credentials masked.
fn mask_urls(s: &str) -> String {
    let mut out = s.to_string();
    for r in url_passwords(s).into_iter().rev() {
        out.replace_range(r, MASK);
    }
    out
}

/// A secret a walk found: the value of a secret-named entry or label, or a whole string that
/// holds URL credentials.
enum Found<'a> {
    Value(&'a str),
    Url(&'a str),
}

/// Visits every secret in a JSON value; `f` returns what replaces it (the value of an entry,
/// the whole string of a URL), or None to leave it.
fn walk(v: &mut Value, in_labels: bool, f: &mut dyn FnMut(Found) -> Option<String>) {
    match v {
        Value::String(s) => {
            if let Some((name, value)) = secret_entry(s) {
                if let Some(r) = f(Found::Value(value)) {
                    *s = format!("{name}={r}");
                }
            } else if has_url_password(s) {
                // `NAME=url` keeps its name in the clear, as an entry does.
                let named = s.split_once('=').filter(|(n, v)| {
                    !n.is_empty() && n.chars().all(name_char) && has_url_password(v)
                });
                match named {
                    Some((name, value)) => {
                        if let Some(r) = f(Found::Url(value)) {
                            *s = format!("{name}={r}");
                        }
                    }
                    None => {
                        if let Some(r) = f(Found::Url(s)) {
                            *s = r;
                        }
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| walk(x, false, f)),
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    Value::String(s) if in_labels && is_secret_name(k) => {
                        if let Some(r) = f(Found::Value(s)) {
                            *s = r;
                        }
                    }
                    _ => walk(child, k.ends_with("Labels"), f),
                }
            }
        }
        _ => {}
    }
}

/// Masks every secret value in a JSON value (an empty value stays empty: nothing to hide).
pub fn mask_json(v: &mut Value) {
    walk(v, false, &mut |found| match found {
        Found::Value(x) if x.is_empty() || x == MASK => None,
        Found::Value(_) => Some(MASK.to_string()),
        Found::Url(s) => Some(mask_urls(s)),
    });
}

/// Masks the secret values in a free text (an error message, a status line): the value of
/// each `NAME=value` with a secret name, up to the next blank, quote or comma (but the
/// placeholder of `KEY=VALUE`), and URL passwords.
pub fn mask_text(s: &str) -> String {
    let s = mask_urls(s);
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(eq) = rest.find('=') {
        let name_start = rest[..eq].rfind(|c: char| !name_char(c)).map_or(0, |i| {
            i + rest[i..].chars().next().map_or(1, char::len_utf8)
        });
        let name = &rest[name_start..eq];
        let value_end = rest[eq + 1..]
            .find(|c: char| c.is_whitespace() || "\"'`,;)]}".contains(c))
            .map_or(rest.len(), |i| eq + 1 + i);
        let value = &rest[eq + 1..value_end];
        // `KEY=VALUE` is how messages spell the syntax, not a value.
        if is_secret_name(name) && !value.is_empty() && value != MASK && value != "VALUE" {
            out.push_str(&rest[..=eq]);
            out.push_str(MASK);
        } else {
            out.push_str(&rest[..value_end]);
        }
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
}

/// The name of the environment entry or label a diff's field is (`…Env.DB_PASSWORD`,
/// `Labels.com.example.password`), if it is one.
fn entry_of(field: &str) -> Option<&str> {
    ["Env.", "Labels."].iter().find_map(|marker| {
        let i = field.rfind(marker)?;
        (i == 0 || field[..i].ends_with('.')).then(|| &field[i + marker.len()..])
    })
}

/// Masks one change of a diff: both sides of an environment entry or label with a secret
/// name, and the secrets inside any other value.
pub fn mask_change(c: &mut Change) {
    let secret = entry_of(&c.field).is_some_and(is_secret_name);
    for side in [&mut c.before, &mut c.after] {
        match side {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            other if secret => *other = Value::String(MASK.into()),
            other => mask_json(other),
        }
    }
}

/// The operator's key (see the module doc).
pub struct Key([u8; 32]);

impl Key {
    fn sub(&self, purpose: &str) -> [u8; 32] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&k, purpose.as_bytes()).as_ref());
        out
    }

    /// A short public name of the key: which key sealed a value.
    fn id(&self) -> String {
        hex::encode(self.sub("wsm key id"))[..8].to_string()
    }

    fn aead(&self) -> LessSafeKey {
        let k = UnboundKey::new(&CHACHA20_POLY1305, &self.sub("wsm seal v1"))
            .expect("a 32-byte ChaCha20-Poly1305 key");
        LessSafeKey::new(k)
    }

    /// Seals a value: `wsm-sealed:v1:<key id>:<base64 of nonce and ciphertext>`.
    pub fn seal(&self, value: &str) -> Result<String, String> {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "the system's random source failed".to_string())?;
        let mut data = value.as_bytes().to_vec();
        self.aead()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| "sealing a secret value failed".to_string())?;
        let mut packed = nonce.to_vec();
        packed.extend(data);
        Ok(format!(
            "{SEALED}{}:{}",
            self.id(),
            base64::engine::general_purpose::STANDARD.encode(packed)
        ))
    }

    /// Opens a sealed value; None when it was sealed with another key or is damaged.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let rest = sealed.strip_prefix(SEALED)?;
        let (id, data) = rest.split_once(':')?;
        if id != self.id() {
            return None;
        }
        let packed = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        if packed.len() < 12 {
            return None;
        }
        let (nonce, ct) = packed.split_at(12);
        let mut buf = ct.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// A keyed hash of some data, 8 hex digits: a version suffix that names content without
    /// letting anyone without the key test a guess of it.
    pub fn version(&self, data: &[u8]) -> String {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.sub("wsm object version"));
        hex::encode(hmac::sign(&k, data).as_ref())[..8].to_string()
    }
}

/// Where the key is kept when `WSM_SECRETS_KEY` is not set (None without a config folder).
pub fn key_file() -> Option<PathBuf> {
    crate::host::xdg::config_dir().map(|d| d.join("wsm").join("secrets.key"))
}

/// A key from its text: 64 hex digits as they are, anything else hashed.
pub(crate) fn key_from_text(text: &str) -> Key {
    let text = text.trim();
    let mut k = [0u8; 32];
    match hex::decode(text) {
        Ok(bytes) if bytes.len() == 32 => k.copy_from_slice(&bytes),
        _ => k.copy_from_slice(&sha2::Sha256::digest(text.as_bytes())),
    }
    Key(k)
}

/// The operator's key: `WSM_SECRETS_KEY`, else the key file, made on first use. A key file
/// that another user owns or that others can read is refused.
pub fn key() -> Result<Key, String> {
    // Unit tests never make a key in the user's own folder.
    if cfg!(test) {
        return Ok(key_from_text("wsm unit tests"));
    }
    if let Ok(text) = std::env::var("WSM_SECRETS_KEY") {
        if !text.trim().is_empty() {
            return Ok(key_from_text(&text));
        }
    }
    let path = key_file().ok_or_else(|| {
        "there is no config folder to keep the secrets key in (HOME and XDG_CONFIG_HOME are unset); set WSM_SECRETS_KEY".to_string()
    })?;
    if !path.exists() {
        make_key_file(&path)?;
    }
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the secrets key {} must be yours and private (chmod 600); it is not used",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key_from_text(&text))
}

/// Makes the key file: 32 random bytes in hex, 0600, in a folder made 0700; published with a
/// hard link, so a concurrent wsm either makes it or reads the one made.
fn make_key_file(path: &std::path::Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot make the secrets key {}: {e}", path.display());
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let mut k = [0u8; 32];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| "the system's random source failed".to_string())?;
    let tmp = dir.join(format!(".secrets.key.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    let written = f
        .write_all(format!("{}\n", hex::encode(k)).as_bytes())
        .and_then(|()| f.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// Where this machine's key comes from, for messages.
pub fn key_source() -> String {
    match std::env::var("WSM_SECRETS_KEY") {
        Ok(t) if !t.trim().is_empty() => "WSM_SECRETS_KEY".into(),
        _ => key_file().map_or("no key file".into(), |p| p.display().to_string()),
    }
}

/// Whether a JSON value holds a secret value that [`seal_json`] would seal.
pub fn has_secret(v: &Value) -> bool {
    let mut found = false;
    let mut copy = v.clone();
    walk(&mut copy, false, &mut |f| {
        found |= !matches!(f, Found::Value(x) if x.is_empty() || x.starts_with(SEALED));
        None
    });
    found
}

/// A JSON value with every secret value, sealed or not, replaced by the same mark: two states
/// that differ only in secret values are equal once blinded.
pub fn blind(v: &Value) -> Value {
    fn unseal_marks(v: &mut Value) {
        match v {
            Value::String(s) => {
                if s.starts_with(SEALED) {
                    *s = MASK.into();
                } else if let Some((name, x)) = s.split_once('=') {
                    if x.starts_with(SEALED) {
                        *s = format!("{name}={MASK}");
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(unseal_marks),
            Value::Object(map) => map.values_mut().for_each(unseal_marks),
            _ => {}
        }
    }
    let mut out = v.clone();
    unseal_marks(&mut out);
    walk(&mut out, false, &mut |_| Some(MASK.to_string()));
    out
}

/// Whether a JSON value holds a sealed value.
pub fn has_sealed(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(SEALED),
        Value::Array(items) => items.iter().any(has_sealed),
        Value::Object(map) => map.values().any(has_sealed),
        _ => false,
    }
}

/// Seals every secret value in a JSON value (a service spec) with `key`.
pub fn seal_json(v: &mut Value, key: &Key) -> Result<(), String> {
    let mut failure = None;
    walk(v, false, &mut |found| {
        let plain = match found {
            Found::Value(x) if x.is_empty() || x.starts_with(SEALED) => return None,
            Found::Value(x) => x,
            Found::Url(s) => s,
        };
        match key.seal(plain) {
            Ok(s) => Some(s),
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    });
    failure.map_or(Ok(()), Err)
}

/// Opens every sealed value in a JSON value. Returns the names of those `key` cannot open
/// (sealed with another key), which stay sealed.
pub fn open_json(v: &mut Value, key: &Key) -> Vec<String> {
    let mut unreadable = Vec::new();
    open_walk(v, "", key, &mut unreadable);
    unreadable
}

fn open_walk(v: &mut Value, label: &str, key: &Key, unreadable: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let (name, sealed) = match s.split_once('=') {
                Some((n, x)) if x.starts_with(SEALED) => (n.to_string(), x.to_string()),
                _ if s.starts_with(SEALED) => (label.to_string(), s.clone()),
                _ => return,
            };
            match key.open(&sealed) {
                Some(plain) if s.starts_with(SEALED) => *s = plain,
                Some(plain) => *s = format!("{name}={plain}"),
                None if name.is_empty() => unreadable.push("a value with URL credentials".into()),
                None => unreadable.push(name),
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|x| open_walk(x, label, key, unreadable)),
        Value::Object(map) => map
            .iter_mut()
            .for_each(|(k, x)| open_walk(x, k, key, unreadable)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;

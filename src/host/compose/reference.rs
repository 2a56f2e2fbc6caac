//! Image references as docker's `distribution/reference` reads them, for the two things
//! `docker stack deploy` does with a service's image: the loader refuses a reference that
//! `ParseAnyReference` refuses ("invalid image reference for service web: …"), and the client
//! stores the familiar form with a tag (`imageWithTagString`: `docker.io/library/nginx` is
//! stored as `nginx:latest`), while the stack label keeps the text as written.
//!
//! The grammar (docker's `reference/regexp.go`):
//! `reference := name [":" tag] ["@" digest]`, `name := [domain "/"] path`,
//! `domain := host [":" port]`, a path component `[a-z0-9]+` runs joined by `.`, `_`, `__` or
//! dashes, `tag := [\w][\w.-]{0,127}`, `digest := algorithm ":" hex`.

/// Docker Hub's domain, dropped from the familiar form, with its official namespace.
const HUB: &str = "docker.io";
const OFFICIAL: &str = "library/";

/// One parsed reference: domain, path, tag and digest (the latter two may be empty).
struct Named {
    domain: String,
    path: String,
    tag: String,
    digest: String,
}

/// Whether docker's `ParseAnyReference` accepts `image`; the error is docker's.
pub fn check(image: &str) -> Result<(), String> {
    if is_identifier(image) || digest(image).is_ok() {
        return Ok(());
    }
    normalized(image).map(|_| ())
}

/// What docker's client stores for `image` (`imageWithTagString`): the familiar name
/// (`docker.io/` and `library/` dropped) with `:latest` when it has neither tag nor digest;
/// `image` itself when it is not a name (a bare id or digest).
pub fn familiar_tagged(image: &str) -> String {
    let Ok(r) = normalized(image) else {
        return image.to_string();
    };
    let mut path = r.path.as_str();
    let mut out = String::new();
    if r.domain == HUB {
        if let Some(rest) = path.strip_prefix(OFFICIAL).filter(|p| !p.contains('/')) {
            path = rest;
        }
    } else {
        out.push_str(&r.domain);
        out.push('/');
    }
    out.push_str(path);
    if r.tag.is_empty() && r.digest.is_empty() {
        out.push_str(":latest");
    }
    if !r.tag.is_empty() {
        out.push(':');
        out.push_str(&r.tag);
    }
    if !r.digest.is_empty() {
        out.push('@');
        out.push_str(&r.digest);
    }
    out
}

/// docker's `ParseNormalizedNamed`: the domain made explicit (Docker Hub's by default, with
/// `library/` for a one-part name), the remote name checked to be lowercase, then parsed.
fn normalized(s: &str) -> Result<Named, String> {
    if is_identifier(s) {
        return Err(format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (domain, remainder) = split_domain(s);
    let remainder = remainder.as_str();
    let remote = remainder.split(':').next().unwrap_or_default();
    if remote.to_lowercase() != remote {
        return Err(format!(
            "invalid reference format: repository name ({remote}) must be lowercase"
        ));
    }
    let (rest, digest_text) = match remainder.split_once('@') {
        Some((r, d)) => (r, d),
        None => (remainder, ""),
    };
    let (path, tag) = match rest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (rest, ""),
    };
    let invalid = || "invalid reference format".to_string();
    if !domain_ok(&domain) || !path_ok(path) || (rest.ends_with(':') || !tag_ok(tag)) {
        return Err(invalid());
    }
    if !digest_text.is_empty() || remainder.ends_with('@') {
        if !digest_shape_ok(digest_text) {
            return Err(invalid());
        }
        digest(digest_text)?;
    }
    if domain.len() + 1 + path.len() > 255 {
        return Err("repository name must not be more than 255 characters".into());
    }
    Ok(Named {
        domain,
        path: path.to_string(),
        tag: tag.to_string(),
        digest: digest_text.to_string(),
    })
}

/// docker's `splitDockerDomain`: the first part is a domain when it is `localhost`, has a `.`
/// or `:`, or has an uppercase letter; else the name is Docker Hub's, whose one-part names are
/// in `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (domain, remote) = match name.split_once('/') {
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.to_lowercase() != first =>
        {
            (first, rest)
        }
        _ => (HUB, name),
    };
    let domain = if domain == "index.docker.io" {
        HUB
    } else {
        domain
    };
    if domain == HUB && !remote.contains('/') {
        return (HUB.into(), format!("{OFFICIAL}{remote}"));
    }
    (domain.to_string(), remote.to_string())
}

/// A domain: host names of `[a-zA-Z0-9-]` parts joined by dots, or a bracketed IPv6 address,
/// then an optional numeric port.
fn domain_ok(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
        _ => (d, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|c| c.is_ascii_hexdigit() || c == b':');
    }
    !host.is_empty()
        && host.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// A path: components of lowercase letters and digits, joined inside by `.`, `_`, `__` or
/// any number of dashes.
fn path_ok(path: &str) -> bool {
    path.split('/').all(|comp| {
        let b = comp.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(&b[i]) {
                i += 1;
                continue;
            }
            let sep_end = i + b[i..].iter().take_while(|c| !alnum(c)).count();
            let sep = &comp[i..sep_end];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
                return false;
            }
            i = sep_end;
        }
        true
    })
}

/// A tag (or none): a word character, then up to 127 word characters, dots and dashes.
fn tag_ok(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    b.is_empty()
        || (b.len() <= 128
            && word(b[0])
            && b[1..].iter().all(|c| word(*c) || *c == b'.' || *c == b'-'))
}

/// The digest grammar: an algorithm of letter-led parts joined by `-_+.`, `:`, 32 hex digits
/// or more.
fn digest_shape_ok(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|p| {
        p.as_bytes()
            .first()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && p.bytes().all(|c| c.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// docker's `digest.Parse`: a known algorithm with its exact length of lowercase hex.
fn digest(d: &str) -> Result<(), String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err("invalid checksum digest format".into());
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ if digest_shape_ok(d) => return Err("unsupported digest algorithm".into()),
        _ => return Err("invalid checksum digest format".into()),
    };
    if hex.len() != len {
        return Err("invalid checksum digest length".into());
    }
    if !hex
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err("invalid checksum digest format".into());
    }
    Ok(())
}

/// A bare image id: 64 lowercase hex digits.
fn is_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789012345678901234567890123456789012345678901234567890123";

    /// What `docker stack deploy` (docker/cli 28, engine 20.10) stored for each image.
    #[test]
    fn images_are_stored_in_their_familiar_form_as_docker_stores_them() {
        for (given, stored) in [
            (
                "docker.io/frappe/erpnext:v15",
                "frappe/erpnext:v15".to_string(),
            ),
            ("docker.io/library/nginx", "nginx:latest".into()),
            ("index.docker.io/library/redis:7", "redis:7".into()),
            ("localhost:5000/foo", "localhost:5000/foo:latest".into()),
            (
                &format!("busybox@sha256:{HEX}"),
                format!("busybox@sha256:{HEX}"),
            ),
            (
                &format!("docker.io/library/busybox:1.36@sha256:{HEX}"),
                format!("busybox:1.36@sha256:{HEX}"),
            ),
            ("library/alpine", "alpine:latest".into()),
            ("ghcr.io/x/y", "ghcr.io/x/y:latest".into()),
            ("Docker.io/nginx", "Docker.io/nginx:latest".into()),
            ("nginx:Tag_1", "nginx:Tag_1".into()),
            (HEX, HEX.into()),
            (&format!("sha256:{HEX}"), format!("sha256:{HEX}")),
            ("docker.io/library/a/b", "library/a/b:latest".into()),
            ("[::1]:5000/x", "[::1]:5000/x:latest".into()),
        ] {
            assert_eq!(familiar_tagged(given), stored, "{given}");
            check(given).unwrap();
        }
    }

    /// docker's refusals, as `docker stack deploy` printed them.
    #[test]
    fn bad_references_are_refused_with_docker_s_reason() {
        for (image, reason) in [
            (
                "Docker.io/Nginx",
                "invalid reference format: repository name (Nginx) must be lowercase",
            ),
            (
                "Nginx",
                "invalid reference format: repository name (library/Nginx) must be lowercase",
            ),
            ("nginx:", "invalid reference format"),
            ("my..bad", "invalid reference format"),
            ("a b", "invalid reference format"),
            ("x@sha256:abc", "invalid reference format"),
            (
                &format!("x@sha256:{HEX}0"),
                "invalid checksum digest length",
            ),
            (&format!("x@md5:{HEX}"), "unsupported digest algorithm"),
        ] {
            assert_eq!(check(image).unwrap_err(), reason, "{image}");
        }
    }
}

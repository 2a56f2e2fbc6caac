//! `yaml::` — a YAML document as a Rhai value, for scripts that read a small file of their own
//! format (compose files have `compose::load`, which also checks their keys and interpolates).

use rhai::{Dynamic, Engine, Module};
use serde_json::Value;

use super::doc::Prim;
use super::{script_err, to_dynamic, ScriptResult};

/// Parses YAML text named `name` (for messages) as docker's yaml.v3 reads it: duplicate keys
/// refused, `yes`/`on` kept as strings, and an integer with a leading zero read as octal
/// (`mode: 0440` is 288, YAML 1.1's spelling that yaml.v3 keeps). The error is one line naming
/// `name`.
pub fn parse(text: &str, name: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! { strict_booleans: true, legacy_octal_numbers: true };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let full = e.to_string();
        let first = full.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let first = first
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(first);
        format!("{name}: {first}")
    })
}

/// Registers the `yaml::` module.
pub fn register(engine: &mut Engine) {
    let mut m = Module::new();
    let prim = Prim::new("yaml::parse(text: string, name: string) -> map").doc(
        "A YAML document as maps, arrays and scalars; bad YAML is an error naming `name` (e.g. \
         the file it came from).",
    );
    prim.set_in(&mut m, |text: &str, name: &str| -> ScriptResult<Dynamic> {
        to_dynamic(&parse(text, name).map_err(script_err)?)
    });
    engine.register_static_module("yaml", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_parses_into_its_values() {
        let v = parse("a: 1\nb: [x, yes]\nc: false\n", "f.yml").unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(v["b"][1], "yes");
        assert_eq!(v["c"], false);
    }

    #[test]
    fn a_leading_zero_is_octal_as_in_yaml_1_1() {
        let v = parse(
            "a: 0555\nb: 0400\nc: 0o440\nd: 0\ne: '0440'\nf: 10\n",
            "f.yml",
        )
        .unwrap();
        assert_eq!(v["a"], 0o555);
        assert_eq!(v["b"], 0o400);
        assert_eq!(v["c"], 0o440);
        assert_eq!(v["d"], 0);
        assert_eq!(v["e"], "0440");
        assert_eq!(v["f"], 10);
    }

    #[test]
    fn a_duplicate_key_is_refused_naming_the_file() {
        let err = parse("a: 1\na: 2\n", "f.yml").unwrap_err();
        assert!(err.starts_with("f.yml: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

use super::*;
use serde_json::json;

fn test_key() -> Key {
    key_from_text("a passphrase for the tests")
}

#[test]
fn secret_values_are_masked_by_name_and_url_passwords_wherever_they_are() {
    let mut v = json!({"Env": ["DB_PASSWORD=hunter2", "API_TOKEN=t0k", "MODE=fast", "EMPTY_SECRET=",
            "DATABASE_URL=postgres://app:pw1@db:5432/x"],
        "Args": ["--db-password=hunter3", "--name=x"],
        "Labels": {"db.password": "hunter4", "team": "a"},
        "SecretName": "st_db_password-1234abcd"});
    mask_json(&mut v);
    let text = v.to_string();
    for s in ["hunter2", "t0k", "pw1", "hunter3", "hunter4"] {
        assert!(!text.contains(s), "{s} in {text}");
    }
    assert_eq!(v["Env"][0], "DB_PASSWORD=********");
    assert_eq!(v["Env"][2], "MODE=fast");
    assert_eq!(v["Env"][3], "EMPTY_SECRET=");
    assert_eq!(
        v["Env"][4],
        "DATABASE_URL=postgres://app:********@db:5432/x"
    );
    assert_eq!(v["Labels"]["team"], "a");
    assert_eq!(v["SecretName"], "st_db_password-1234abcd");
}

#[test]
fn free_text_loses_its_secret_values_and_keeps_the_rest() {
    let t = mask_text(
        "env [\"DB_PASSWORD=hunter2\", \"A=1\"] NODE_KEYS=abc,def via https://u:p4ss@h/x",
    );
    assert_eq!(
        t,
        "env [\"DB_PASSWORD=********\", \"A=1\"] NODE_KEYS=********,def via https://u:********@h/x"
    );
    assert_eq!(mask_text("a == b, x=1"), "a == b, x=1");
    assert_eq!(
        mask_text("expected KEY=VALUE, but the line has no '='"),
        "expected KEY=VALUE, but the line has no '='"
    );
}

#[test]
fn a_change_of_a_secret_entry_names_the_key_and_hides_both_sides() {
    let mut c = Change {
        field: "TaskTemplate.ContainerSpec.Env.DB_PASSWORD".into(),
        before: json!("old"),
        after: json!("new"),
    };
    mask_change(&mut c);
    assert_eq!((c.before, c.after), (json!(MASK), json!(MASK)));
    let mut added = Change {
        field: "TaskTemplate.ContainerSpec.Env.API_TOKEN".into(),
        before: Value::Null,
        after: json!("x"),
    };
    mask_change(&mut added);
    assert_eq!((added.before, added.after), (Value::Null, json!(MASK)));
    let mut label = Change {
        field: "TaskTemplate.ContainerSpec.Labels.com.example.password".into(),
        before: json!("a"),
        after: json!("b"),
    };
    mask_change(&mut label);
    assert_eq!(label.after, MASK);
    let mut plain = Change {
        field: "TaskTemplate.ContainerSpec.Env.MODE".into(),
        before: json!("a"),
        after: json!("b"),
    };
    mask_change(&mut plain);
    assert_eq!(plain.after, "b");
}

#[test]
fn sealed_values_open_with_their_key_only() {
    let k = test_key();
    let spec = json!({"Env": ["DB_PASSWORD=hunter2", "MODE=fast", "U=https://a:b@h"],
        "Labels": {"api.token": "t0k"}});
    let mut sealed = spec.clone();
    seal_json(&mut sealed, &k).unwrap();
    let text = sealed.to_string();
    for s in ["hunter2", "t0k", "a:b@"] {
        assert!(!text.contains(s), "{s} in {text}");
    }
    assert!(text.contains("MODE=fast"));
    assert_eq!(blind(&sealed), blind(&spec));
    assert_ne!(blind(&spec), blind(&json!({"Env": ["MODE=slow"]})));
    let mut opened = sealed.clone();
    assert!(open_json(&mut opened, &k).is_empty());
    assert_eq!(opened, spec);
    let mut other = sealed.clone();
    let missing = open_json(&mut other, &key_from_text("another"));
    assert_eq!(missing, ["DB_PASSWORD", "U", "api.token"]);
    // Two seals of one value differ (a fresh nonce each time); versions are stable.
    assert_ne!(k.seal("x").unwrap(), k.seal("x").unwrap());
    assert_eq!(k.version(b"password"), k.version(b"password"));
    assert_ne!(k.version(b"password"), "5e884898");
}

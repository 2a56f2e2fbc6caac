use super::*;

#[test]
fn targets_parse() {
    assert_eq!(
        parse_target("ssh://root@10.0.0.1").unwrap(),
        ("root".into(), "10.0.0.1".into(), None)
    );
    assert_eq!(
        parse_target("core@h:2222").unwrap(),
        ("core".into(), "h".into(), Some(2222))
    );
    assert_eq!(
        parse_target("10.0.0.2").unwrap(),
        ("root".into(), "10.0.0.2".into(), None)
    );
    assert!(parse_target("-oProxyCommand=x").is_err());
    assert!(parse_target("root@h:port").is_err());
}

#[test]
fn remote_paths_are_quoted() {
    let s = atomic_write_script("/etc/x y/$(rm)", 0o600);
    assert!(s.contains("'/etc/x y/$(rm)'"), "{s}");
    assert!(s.contains("chmod 600"), "{s}");
}

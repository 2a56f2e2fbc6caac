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
    let s = atomic_write_script("/etc/x y/$(rm)", 0o600, 12);
    assert!(s.contains("'/etc/x y/$(rm)'"), "{s}");
    assert!(s.contains("chmod 600"), "{s}");
    assert!(s.contains("-eq 12 ]"), "{s}");
}

#[test]
fn the_atomic_write_renames_only_a_whole_file() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sub/out.bin");
    let run = |size: u64, input: &[u8]| {
        let mut c = std::process::Command::new("sh")
            .arg("-c")
            .arg(atomic_write_script(target.to_str().unwrap(), 0o600, size))
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        c.wait_with_output().unwrap()
    };
    // Cut short (what a killed sender leaves): nothing in place, no temporary left.
    let short = run(10, b"12345");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("not written whole"));
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
        0
    );
    // Whole: in place with its mode.
    assert!(run(5, b"12345").status.success());
    assert_eq!(std::fs::read(&target).unwrap(), b"12345");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

//! Unit tests of `revisions`: what changed, damaged documents, which revision a rollback goes to.

use super::*;

fn state(services: Value) -> Value {
    json!({"services": services, "images": {}, "networks": {}, "configs": [], "secrets": []})
}

#[test]
fn changes_name_created_removed_and_updated_services_with_their_fields() {
    let a = state(
        json!({"s_a": {"TaskTemplate": {"ContainerSpec": {"Image": "i:1"}}}, "s_b": {"Mode": 1}}),
    );
    let b = state(
        json!({"s_a": {"TaskTemplate": {"ContainerSpec": {"Image": "i:2", "Env": ["X=1"]}}}, "s_c": {}}),
    );
    assert_eq!(
        changes(&a, &b),
        [
            "update s_a: TaskTemplate.ContainerSpec.Env.X, TaskTemplate.ContainerSpec.Image i:1 → i:2",
            "remove s_b",
            "create s_c"
        ]
    );
    assert!(changes(&a, &a).is_empty());
}

#[test]
fn a_document_of_another_shape_is_damaged_never_an_empty_history() {
    let ok = json!({"stack": "st", "revisions": [
        {"rev": 1, "time": "t", "by": "u@h", "operation": "deploy", "status": "deployed",
         "changes": ["create st_a"], "state": state(json!({"st_a": {}}))},
        {"rev": 2, "status": "failed: x", "changes": [], "state": null}]});
    assert_eq!(revisions_of("st", ok).unwrap().len(), 2);
    assert!(revisions_of("st", json!({"revisions": []}))
        .unwrap()
        .is_empty());
    for bad in [
        json!({"revisions": "none"}),
        json!({"stack": "st"}),
        json!([1, 2]),
        json!({"revisions": [{"rev": "1"}]}),
        json!({"revisions": [{"rev": 1, "state": {"services": []}}]}),
        json!({"revisions": [{"rev": 1, "state": null, "status": 3}]}),
    ] {
        let e = revisions_of("st", bad.clone()).unwrap_err().to_string();
        assert!(
            e.contains("document stack.st.revisions in the swarm store is damaged")
                && e.contains("`docker config rm wsm-state-stack.st.revisions`"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_rollback_goes_to_the_revision_before_the_current_or_the_one_named() {
    let h = History {
        stack: "st".into(),
        revisions: vec![
            json!({"rev": 1, "state": state(json!({"a": 1}))}),
            json!({"rev": 2, "state": state(json!({"a": 2}))}),
            json!({"rev": 3, "status": "failed: x; rolled back to revision 2", "state": null}),
        ],
        version: None,
    };
    assert_eq!(target(&h, "st", 0).unwrap()["rev"], 1);
    assert_eq!(target(&h, "st", 2).unwrap()["rev"], 2);
    let e = target(&h, "st", 3).unwrap_err().to_string();
    assert!(e.contains("no state to return to"), "{e}");
    let e = target(&h, "st", 9).unwrap_err().to_string();
    assert!(
        e.contains("no revision 9; revisions to return to: 1, 2"),
        "{e}"
    );
}

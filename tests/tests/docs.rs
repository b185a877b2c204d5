//! What `docs/` shows is what the code is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

/// The state machine diagram in docs/state-machine.md is the one the
/// definition draws today (`cmek-local render-diagram`), and it names every
/// state of the definition.
#[test]
fn the_state_machine_diagram_is_drawn_from_the_definition_as_it_is() {
    let root = sandbox::stack::repo_root();
    let doc = std::fs::read_to_string(root.join("docs/state-machine.md")).unwrap();
    let start = doc.find("```mermaid\n").expect("a mermaid block") + "```mermaid\n".len();
    let end = start + doc[start..].find("```").expect("the block's end");
    let definition = sandbox::diagram::deployed_definition().unwrap();
    let drawn = sandbox::diagram::mermaid(&definition).unwrap();
    assert_eq!(
        &doc[start..end],
        drawn,
        "docs/state-machine.md is stale: regenerate it with target/debug/cmek-local render-diagram"
    );
    for state in definition["States"].as_object().unwrap().keys() {
        assert!(
            doc[start..end].contains(&format!("\"{state}")),
            "{state} is not drawn"
        );
    }
}

//! The configuration example in `sandbox/README.md` is one the stand-in
//! accepts (every field is checked: unknown ones are refused).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use sandbox::admin_api::SandboxConfig;

#[test]
fn the_readme_configuration_example_is_accepted() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Admin API stand-in configuration").unwrap()..];
    let start = section.find("```json\n").unwrap() + "```json\n".len();
    let end = start + section[start..].find("```").unwrap();
    let config: SandboxConfig =
        serde_json::from_str(&section[start..end]).expect("the README's example parses");
    assert_eq!(config.orgs[0].workspaces, 2500);
    assert_eq!(config.faults.scripted.len(), 1);
    assert_eq!(config.faults.seed, Some(42));
}

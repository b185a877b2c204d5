//! What `docs/` shows is what the code is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;

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

/// Every `CMEK_…` variable the docs name is one the code reads or sets, and
/// every one the code has is in the docs.
#[test]
fn the_docs_name_exactly_the_environment_variables_the_code_has() {
    let root = sandbox::stack::repo_root();
    let pattern = regex::Regex::new(r"CMEK_[A-Z0-9_]*[A-Z0-9]").unwrap();
    let mut in_code = BTreeSet::new();
    for dir in [
        "shared/src",
        "cli/src",
        "sandbox/src",
        "tests/src",
        "tests/tests",
        "functions",
    ] {
        for file in files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            in_code.extend(pattern.find_iter(&text).map(|m| m.as_str().to_owned()));
        }
    }
    for file in ["template.yaml", "scripts/test", "scripts/lib.sh", "bench/run"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        in_code.extend(pattern.find_iter(&text).map(|m| m.as_str().to_owned()));
    }
    // A prefix the crash-point code builds names from, not a variable.
    in_code.retain(|v| v != "CMEK_CRASH");
    let docs = cmek_e2e::documentation();
    let in_docs: BTreeSet<String> = pattern.find_iter(&docs).map(|m| m.as_str().to_owned()).collect();
    let undocumented: Vec<_> = in_code.difference(&in_docs).collect();
    let unknown: Vec<_> = in_docs.difference(&in_code).collect();
    assert!(
        undocumented.is_empty(),
        "in the code, not the docs: {undocumented:?}"
    );
    assert!(unknown.is_empty(), "in the docs, not the code: {unknown:?}");
}

/// Every template parameter is in the docs, and every `Name=value` the docs
/// tell a user to pass is a parameter.
#[test]
fn the_docs_name_exactly_the_templates_parameters() {
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(sandbox::stack::repo_root().join("template.yaml")).unwrap(),
    )
    .unwrap();
    let parameters: BTreeSet<String> = template["Parameters"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let docs = cmek_e2e::documentation();
    let missing: Vec<_> = parameters
        .iter()
        .filter(|p| !docs.contains(&format!("`{p}`")) && !docs.contains(&format!("`{p}=")))
        .collect();
    assert!(missing.is_empty(), "parameters the docs never name: {missing:?}");
    let overrides = regex::Regex::new(r"(?:`|overrides )([A-Z][A-Za-z0-9]+)=").unwrap();
    let unknown: BTreeSet<&str> = overrides
        .captures_iter(&docs)
        .map(|c| c.get(1).unwrap().as_str())
        .filter(|p| !parameters.contains(*p))
        .collect();
    assert!(
        unknown.is_empty(),
        "the docs pass parameters the template lacks: {unknown:?}"
    );
}

/// Every `cmekctl <command>` and `cmek-local <command>` the docs show is a
/// command of the binary, with only flags that command has; every command
/// is in the docs.
#[test]
fn the_docs_name_exactly_the_commands_and_flags_the_tools_have() {
    let target = sandbox::stack::target_dir();
    let docs = cmek_e2e::documentation();
    let flag_pattern = regex::Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
    for tool in ["cmekctl", "cmek-local"] {
        let help = |args: &[&str]| {
            let out = std::process::Command::new(target.join("debug").join(tool))
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("{tool}: {e} (cargo build --workspace --bins)"));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let commands = subcommands(&help(&["--help"]));
        assert!(commands.len() >= 4, "{tool}: no commands read from --help");
        let shown = regex::Regex::new(&format!(r"(?:^|[\s/(])({tool}) ([a-z][a-z-]+)([^\n#]*)")).unwrap();
        let mut documented = BTreeSet::new();
        for snippet in code(&docs) {
            for c in shown.captures_iter(&snippet) {
                let line = c.get(0).unwrap().as_str().trim();
                // `cargo test -p cmekctl …` names the package, not the tool.
                if snippet[..c.get(1).unwrap().start()].ends_with("-p ") {
                    continue;
                }
                let command = c.get(2).unwrap().as_str();
                assert!(
                    commands.contains(command),
                    "the docs run `{tool} {command}`, which does not exist: {line}"
                );
                documented.insert(command.to_owned());
                let flags = help(&[command, "--help"]) + &help(&["--help"]);
                for flag in flag_pattern.find_iter(c.get(3).unwrap().as_str()) {
                    assert!(
                        flags.contains(&format!("{} ", flag.as_str()))
                            || flags.contains(&format!("{}\n", flag.as_str()))
                            || flags.contains(&format!("{}=", flag.as_str()))
                            || flags.contains(&format!("{},", flag.as_str())),
                        "the docs pass {} to `{tool} {command}`, which has no such flag: {line}",
                        flag.as_str()
                    );
                }
            }
        }
        let missing: Vec<_> = commands.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{tool} commands the docs never show: {missing:?}"
        );
    }
}

/// What the docs show as code: the lines of fenced blocks and the inline
/// code spans of the prose.
fn code(docs: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    let span = regex::Regex::new(r"`([^`\n]+)`").unwrap();
    for line in docs.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push(line.to_owned());
        } else {
            out.extend(span.captures_iter(line).map(|c| c[1].to_owned()));
        }
    }
    out
}

/// The commands a clap `--help` lists (its "Commands:" block), without `help`.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.split("Commands:")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

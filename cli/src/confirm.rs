//! Asking before an irreversible start: `provision` and `onboard` print
//! their plan, then ask on a terminal; `--yes` starts without asking. With
//! no terminal to ask on (a script, a pipe, `--json`) and no `--yes`,
//! nothing starts and the exit code says so, so that a script which forgot
//! `--yes` does not go on as if the workspace were encrypted.

use std::io::{BufRead, IsTerminal, Write};

/// The exit code when the plan was printed and nothing was started.
pub const NOT_STARTED: i32 = 3;

/// Whether to start: the answer `yes` on a terminal. Anything else, or no
/// terminal, says on stderr that nothing was started and how to start.
pub fn confirmed(json_out: bool, question: &str) -> anyhow::Result<bool> {
    let interactive = !json_out && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let yes = interactive && {
        eprint!("{question} Attaching is irreversible. Type yes to start: ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        is_yes(&answer)
    };
    if !yes {
        eprintln!(
            "not started{}: run again with --yes to start{}",
            if interactive {
                ""
            } else {
                " (no terminal to ask on)"
            },
            if interactive { "" } else { " without asking" }
        );
    }
    Ok(yes)
}

/// Only the word itself: a stray Enter or "y" is not consent to an
/// irreversible attach.
fn is_yes(answer: &str) -> bool {
    answer.trim().eq_ignore_ascii_case("yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_is_consent() {
        assert!(is_yes("yes\n") && is_yes(" YES ") && is_yes("Yes"));
        for no in ["", "\n", "y", "no", "yes please", "ye"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}

//! The local stack comes up from the template and leaves nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use serde_json::json;

fn alive(pid: u32) -> bool {
    // A zombie has no cmdline; a reaped process has no /proc entry.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_tears_down_every_process_it_started() {
    let stack = cmek_e2e::stack("teardown", |_| {}).await;
    let ws = cmek_e2e::workspace_id(&cmek_e2e::workspaces(&stack)[0]);
    let r = stack
        .run(&json!({"workspaceId": ws}), cmek_e2e::TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.status, "SUCCEEDED");
    let mut pids: Vec<u32> = stack.host.stats().iter().filter_map(|s| s.pid).collect();
    assert!(
        pids.len() >= 6,
        "every workflow function ran in its own process: {pids:?}"
    );
    pids.push(stack.moto_pid().unwrap());
    assert!(pids.iter().all(|p| alive(*p)));
    drop(stack);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<&u32> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "still running after teardown: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_stacks_run_side_by_side() {
    let (a, b) = tokio::join!(
        cmek_e2e::stack("side-a", |_| {}),
        cmek_e2e::stack("side-b", |_| {})
    );
    assert_ne!(a.moto_url, b.moto_url);
    assert_ne!(a.host.url, b.host.url);
    assert_ne!(a.admin.url, b.admin.url);
    let wa = cmek_e2e::workspace_id(&cmek_e2e::workspaces(&a)[0]);
    let wb = cmek_e2e::workspace_id(&cmek_e2e::workspaces(&b)[0]);
    let (ia, ib) = (json!({"workspaceId": wa}), json!({"workspaceId": wb}));
    let (ra, rb) = tokio::join!(a.run(&ia, cmek_e2e::TIMEOUT), b.run(&ib, cmek_e2e::TIMEOUT));
    assert_eq!(ra.unwrap().status, "SUCCEEDED");
    assert_eq!(rb.unwrap().status, "SUCCEEDED");
}

/// Killing a function's instances (as the crash and key-rotation tests do)
/// must not strand the next invoke on the dying instance: it goes to a new one.
#[tokio::test(flavor = "multi_thread")]
async fn an_invoke_right_after_a_kill_is_answered_by_a_new_instance() {
    let stack = cmek_e2e::stack("kill-invoke", |_| {}).await;
    let catcher = cmek_e2e::ResponseCatcher::start().await;
    for round in 0..15 {
        let id = format!("delete-{round}");
        // A Delete of a resource that is not ours: answered at once, changes nothing.
        let event = json!({
            "RequestType": "Delete",
            "ResponseURL": catcher.url_for(&id), "RequestId": id,
            "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/app/1",
            "LogicalResourceId": "Other", "ResourceType": "Custom::AnthropicCmek",
            "PhysicalResourceId": "not-ours",
            "ResourceProperties": {"ServiceToken": "x", "WorkspaceId": "wrkspc_x"},
        });
        let invoked = tokio::time::timeout(
            Duration::from_secs(30),
            stack.invoke("CustomResourceFunction", &event),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the invoke was never answered"))
        .unwrap();
        assert_eq!(invoked.0, None, "round {round}: {}", invoked.1);
        assert_eq!(
            catcher.wait(&id, Duration::from_secs(5)).await["Status"],
            "SUCCESS"
        );
        stack.host.kill_function("CustomResourceFunction");
    }
    // (instance, invocations) of every instance that ran.
    let instances: Vec<(u64, u64)> = stack
        .host
        .stats_history()
        .into_iter()
        .filter(|s| s.function == "CustomResourceFunction")
        .map(|s| (s.instance, s.invocations))
        .collect();
    assert_eq!(instances.len(), 15, "one instance per round: {instances:?}");
    assert!(instances.iter().all(|(_, n)| *n == 1), "{instances:?}");
}

/// Every process descended from `root`, from `/proc` (parent ids).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) {
            parent_of.insert(pid, ppid);
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&child, _) in parent_of.iter().filter(|(_, pp)| **pp == p) {
            out.push(child);
            frontier.push(child);
        }
    }
    out
}

/// `cmek-local up` stopped the ways a process manager or a closed terminal
/// stop it (SIGTERM, SIGHUP) ends every process it started — moto, the
/// functions — instead of dying and leaving them running.
#[test]
fn cmek_local_up_ends_every_process_it_started_on_sigterm_and_sighup() {
    use std::io::{BufRead, BufReader};
    let target = sandbox::stack::target_dir();
    for (signal, name) in [(libc_signal::SIGTERM, "SIGTERM"), (libc_signal::SIGHUP, "SIGHUP")] {
        let mut child = std::process::Command::new(target.join("debug/cmek-local"))
            .arg("up")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cmek-local (cargo build --workspace --bins)");
        let pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "{name}: the stack did not come up");
            match lines.next() {
                Some(Ok(l)) if l.starts_with("local stack is up") => break,
                Some(_) => {}
                None => panic!("{name}: cmek-local up exited before the stack was up"),
            }
        }
        let started = descendants(pid);
        let moto = started.iter().any(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("moto_server.py"))
        });
        assert!(moto, "{name}: moto among the processes started: {started:?}");
        // Keep reading its output, so that its last lines cannot block it.
        let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exited = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{name}: cmek-local up did not stop");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(exited.success(), "{name}: {exited:?}");
        let said = drain.join().unwrap();
        assert!(
            said.iter().any(|l| l.contains(&format!("stopping ({name})"))),
            "{said:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let left: Vec<&u32> = started.iter().filter(|p| alive(**p)).collect();
        assert!(
            left.is_empty(),
            "{name}: still running after cmek-local stopped: {left:?}"
        );
    }
}

/// Signal numbers, as `kill` takes them (Linux).
mod libc_signal {
    pub const SIGHUP: u8 = 1;
    pub const SIGTERM: u8 = 15;
}
